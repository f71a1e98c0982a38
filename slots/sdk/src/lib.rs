//! Write a VSS slot type in plain Rust.
//!
//! A slot type is a sans-IO state machine compiled to a WebAssembly
//! component: the host passes the time and randomness in every call
//! ([`Context`]) and carries out the [`Effect`]s the slot returns. Implement
//! [`Slot`] for your type and call [`export_slot!`] once:
//!
//! ```
//! #![cfg_attr(target_arch = "wasm32", no_std)]
//! extern crate alloc;
//!
//! use alloc::{string::String, vec::Vec};
//! use vss_slot_sdk::{Config, Context, Reply, Request, Response, Slot, SlotError};
//!
//! /// Counts custom calls.
//! pub struct Hits(u64);
//!
//! impl Slot for Hits {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Hits(0))
//!     }
//!     fn handle(&mut self, _ctx: &Context, req: Request) -> Result<Reply, SlotError> {
//!         match req {
//!             Request::Custom(_) => {
//!                 self.0 += 1;
//!                 Ok(Reply::of(Response::Custom(self.0.to_le_bytes().to_vec())))
//!             }
//!             other => Err(SlotError::unsupported("hits", &other)),
//!         }
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn merge(&mut self, _state: &[u8]) -> Result<(), String> {
//!         Ok(())
//!     }
//! }
//!
//! vss_slot_sdk::export_slot!(Hits);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and load the
//! `.wasm` as a `custom` slot; `docs/custom-slots.md` walks through it.
//!
//! Natively (for unit tests) the crate is a plain library and
//! [`export_slot!`] expands to nothing, so slot logic is testable with
//! `cargo test` and a fake clock.
#![no_std]

extern crate alloc;

pub mod codec;
pub mod config;
#[cfg(all(target_arch = "wasm32", feature = "guest-runtime"))]
mod guest_runtime;
pub mod keyed;
pub mod limiter;
pub mod lww;
pub mod members;

#[doc(hidden)]
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "slot",
        path: "wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "vss_slot_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

use alloc::string::String;
use alloc::vec::Vec;

pub use bindings::vss::slot::types::{
    Acquire, Acquired, Context, Custom, Delivery, DeliveryReport, Effect, Publish, Recipients,
    Reply, Request, Response, SlotError,
};
pub use config::Config;

/// A slot type. One value lives per configured slot, inside its own Wasm
/// instance; calls never overlap.
pub trait Slot: Sized + Send + 'static {
    /// Builds the slot from its config; an error should name the field.
    fn init(config: &Config) -> Result<Self, String>;

    /// Answers one request.
    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError>;

    /// Called about once per second by the host.
    fn tick(&mut self, _ctx: &Context) -> Vec<Effect> {
        Vec::new()
    }

    /// The whole state, for replication to a standby instance.
    fn snapshot(&self) -> Vec<u8>;

    /// Folds a snapshot (from [`Slot::snapshot`] of the same type) into the state.
    fn merge(&mut self, state: &[u8]) -> Result<(), String>;
}

impl Reply {
    /// A reply with no effects.
    pub fn of(response: Response) -> Self {
        Self {
            response,
            effects: Vec::new(),
        }
    }
}

impl Request {
    /// The verb's name, for error messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Acquire(_) => "acquire",
            Request::Publish(_) => "publish",
            Request::Register(_) => "register",
            Request::Deregister(_) => "deregister",
            Request::DeliveryReport(_) => "delivery-report",
            Request::Custom(_) => "custom",
        }
    }
}

impl SlotError {
    /// The error for a verb that a slot type does not implement.
    pub fn unsupported(type_name: &str, req: &Request) -> Self {
        SlotError::Unsupported(alloc::format!(
            "slot type {type_name} does not support `{}`",
            req.verb()
        ))
    }
}

/// Holds the one slot value of a Wasm instance. Used by [`export_slot!`].
#[doc(hidden)]
pub struct SlotCell<T>(spin::Mutex<Option<T>>);

impl<T: Slot> Default for SlotCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Slot> SlotCell<T> {
    pub const fn new() -> Self {
        Self(spin::Mutex::new(None))
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.lock().as_mut().map(f)
    }

    pub fn init(&self, config: Vec<(String, String)>) -> Result<(), String> {
        let slot = T::init(&Config::from(config))?;
        *self.0.lock() = Some(slot);
        Ok(())
    }

    pub fn handle(&self, ctx: Context, req: Request) -> Result<Reply, SlotError> {
        self.with(|s| s.handle(&ctx, req))
            .unwrap_or_else(|| Err(not_initialised()))
    }

    pub fn handle_batch(&self, ctx: Context, reqs: Vec<Request>) -> Vec<Result<Reply, SlotError>> {
        let n = reqs.len();
        self.with(|s| reqs.into_iter().map(|r| s.handle(&ctx, r)).collect())
            .unwrap_or_else(|| (0..n).map(|_| Err(not_initialised())).collect())
    }

    pub fn tick(&self, ctx: Context) -> Vec<Effect> {
        self.with(|s| s.tick(&ctx)).unwrap_or_default()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.with(|s| s.snapshot()).unwrap_or_default()
    }

    pub fn merge(&self, state: Vec<u8>) -> Result<(), String> {
        self.with(|s| s.merge(&state))
            .unwrap_or_else(|| Err(String::from("slot not initialised")))
    }
}

#[doc(hidden)]
pub mod __private {
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

fn not_initialised() -> SlotError {
    SlotError::Internal(String::from("slot not initialised: init was not called"))
}

/// Exports a [`Slot`] type as the slot component's implementation.
///
/// Expands to nothing outside wasm32, so the same crate builds natively for
/// tests.
#[macro_export]
macro_rules! export_slot {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::vss::slot::types as __t;
            static __VSS_SLOT: $crate::SlotCell<$ty> = $crate::SlotCell::new();
            struct VssSlotExport;
            impl $crate::bindings::Guest for VssSlotExport {
                fn init(
                    config: __t::Config,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    __VSS_SLOT.init(config)
                }
                fn handle(
                    ctx: __t::Context,
                    req: __t::Request,
                ) -> ::core::result::Result<__t::Reply, __t::SlotError> {
                    __VSS_SLOT.handle(ctx, req)
                }
                fn handle_batch(
                    ctx: __t::Context,
                    reqs: $crate::__private::Vec<__t::Request>,
                ) -> $crate::__private::Vec<::core::result::Result<__t::Reply, __t::SlotError>>
                {
                    __VSS_SLOT.handle_batch(ctx, reqs)
                }
                fn tick(ctx: __t::Context) -> $crate::__private::Vec<__t::Effect> {
                    __VSS_SLOT.tick(ctx)
                }
                fn snapshot() -> $crate::__private::Vec<u8> {
                    __VSS_SLOT.snapshot()
                }
                fn merge(
                    state: $crate::__private::Vec<u8>,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    __VSS_SLOT.merge(state)
                }
            }
    $crate::bindings::export_world!(VssSlotExport with_types_in $crate::bindings);
        };
    };
}
