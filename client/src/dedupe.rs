//! Remembering recent message ids, so a message that arrives through
//! several instances is handed to the application once.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` (slot, message id) pairs seen.
#[derive(Debug)]
pub(crate) struct Seen {
    set: HashSet<(u32, u64)>,
    order: VecDeque<(u32, u64)>,
    capacity: usize,
}

impl Seen {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
        }
    }

    /// True the first time a pair is seen (within the window).
    pub(crate) fn first(&mut self, slot: u32, message_id: u64) -> bool {
        if !self.set.insert((slot, message_id)) {
            return false;
        }
        self.order.push_back((slot, message_id));
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_and_the_window_is_bounded() {
        let mut seen = Seen::new(2);
        assert!(seen.first(1, 10));
        assert!(!seen.first(1, 10));
        assert!(
            seen.first(2, 10),
            "same id on another slot is another message"
        );
        assert!(seen.first(1, 11));
        // (1, 10) fell out of the window of 2.
        assert!(seen.first(1, 10));
        assert_eq!(seen.set.len(), 2);
    }
}
