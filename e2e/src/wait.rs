//! Polling with a deadline: Kubernetes converges, it does not answer at once.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};

/// Calls `check` every `every` until it returns `Ok(Some(v))`, or fails
/// after `limit` with the last reason `check` gave (`Ok(None)` = not yet,
/// `Err` = not yet, with a reason worth showing).
pub async fn until<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::from("condition never held");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_that_holds() {
        let mut n = 0;
        let got = until(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let v = n;
                async move { Ok((v >= 3).then_some(v)) }
            },
        )
        .await
        .expect("holds on the third call");
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn times_out_with_the_last_reason() {
        let err = until::<(), _, _>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Err(anyhow::anyhow!("pod vss-1 not ready")) },
        )
        .await
        .expect_err("never holds");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("never") && msg.contains("pod vss-1 not ready"),
            "{msg}"
        );
    }
}
