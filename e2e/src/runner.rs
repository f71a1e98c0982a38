//! Runs named scenarios in order and prints a plain tally.
//!
//! The kind scenarios share one cluster (the last one deletes it), so they
//! run sequentially in a fixed order rather than under libtest's parallel
//! harness. Scenarios that are not run are counted as skipped, never as
//! passed.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// What a scenario returns.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// One named scenario over a shared context `C`.
pub struct Scenario<C> {
    pub name: &'static str,
    pub run: for<'a> fn(&'a C) -> ScenarioFuture<'a>,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Tally {
    /// The closing line, in the plain form CI tools read.
    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// Scenario names asked for on the command line (`cargo test -p vss-e2e
/// --test kind -- config`); flags such as `--nocapture` that cargo passes
/// through are ignored. Empty: run all.
pub fn filters(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

pub fn is_selected(name: &str, filters: &[String]) -> bool {
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// Runs the selected scenarios in order, printing each outcome.
pub async fn run_all<C>(ctx: &C, scenarios: &[Scenario<C>], filters: &[String]) -> Tally {
    let mut tally = Tally::default();
    for scenario in scenarios {
        if !is_selected(scenario.name, filters) {
            tally.skipped += 1;
            continue;
        }
        println!("scenario {} ...", scenario.name);
        let started = Instant::now();
        match (scenario.run)(ctx).await {
            Ok(()) => {
                tally.passed += 1;
                println!(
                    "scenario {} ... ok ({:.1?})",
                    scenario.name,
                    started.elapsed()
                );
            }
            Err(e) => {
                tally.failed += 1;
                println!(
                    "scenario {} ... FAILED ({:.1?}): {e:#}",
                    scenario.name,
                    started.elapsed()
                );
            }
        }
    }
    tally
}

/// The message printed when no cluster is given.
pub fn skip_banner<C>(scenarios: &[Scenario<C>], variable: &str) -> String {
    let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
    let rule = "=".repeat(72);
    format!(
        "{rule}\nSKIPPED: the {n} kind end-to-end scenarios did NOT run: set {variable} to a kubeconfig\n\
         of a cluster prepared by e2e/run.sh (see e2e/README.md). Nothing was tested;\n\
         these are not passes. Scenarios: {}\n{rule}",
        names.join(", "),
        n = names.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &()) -> ScenarioFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn fails(_: &()) -> ScenarioFuture<'_> {
        Box::pin(async { anyhow::bail!("boom") })
    }

    #[test]
    fn cargo_flags_are_not_filters() {
        let args = ["kind", "--nocapture", "config", "-q"].map(String::from);
        assert_eq!(filters(args), vec!["config".to_string()]);
    }

    #[test]
    fn an_empty_filter_selects_everything() {
        assert!(is_selected("pods_become_ready", &[]));
        assert!(is_selected("pods_become_ready", &["ready".into()]));
        assert!(!is_selected("pods_become_ready", &["lease".into()]));
    }

    #[tokio::test]
    async fn failures_and_unselected_scenarios_are_counted_apart() {
        let scenarios = [
            Scenario {
                name: "first_ok",
                run: ok,
            },
            Scenario {
                name: "second_fails",
                run: fails,
            },
            Scenario {
                name: "third_ok",
                run: ok,
            },
        ];
        let tally = run_all(&(), &scenarios, &["second".into(), "first".into()]).await;
        assert_eq!(
            tally,
            Tally {
                passed: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert_eq!(tally.line(), "1 passed, 1 failed, 1 skipped");
    }

    #[test]
    fn the_skip_banner_names_the_variable_and_says_nothing_ran() {
        let scenarios = [Scenario::<()> { name: "a", run: ok }];
        let banner = skip_banner(&scenarios, "VSS_E2E_KUBECONFIG");
        assert!(banner.contains("SKIPPED"));
        assert!(banner.contains("VSS_E2E_KUBECONFIG"));
        assert!(banner.contains("not passes"));
    }
}
