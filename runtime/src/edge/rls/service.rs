//! The gRPC side of the rate limit service.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use prometheus_client::metrics::counter::Counter;
use tonic::{Request, Response, Status};
use vss_config::Period;
use vss_slot_sdk::codec::Wire;
use vss_slot_sdk::limiter::{OP_RELEASE, OP_TAKE_ALL, Take, Taken};

use super::rules::{Rule, RuleIndex};
use crate::core::access::{Access, Grant, Permission};
use crate::core::calls::CustomCall;
use crate::core::node::{Node, Origin};
use crate::edge::auth;
use crate::ops::metrics::{Metrics, OutcomeLabels, RlsRuleLabels};

/// Most descriptors in one request.
pub const MAX_DESCRIPTORS: usize = 32;
/// Most entries in one descriptor.
pub const MAX_ENTRIES: usize = 16;
/// Longest domain, descriptor key or value, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The rules in force, rebuilt when the slot configuration changes.
struct Rules {
    generation: u64,
    index: RuleIndex,
    /// Per rule (by [`Rule::id`]): allowed, over limit, shadowed.
    decisions: Vec<[Counter; 3]>,
}

/// Serves `ShouldRateLimit` from the limiter slots.
#[derive(Clone)]
pub struct RateLimiter {
    node: Arc<Node>,
    rules: Arc<ArcSwap<Rules>>,
    metrics: Metrics,
    /// Client tokens, as on the rest of the client port.
    access: Option<Arc<Access>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rules", &self.rules.load().index.rules().len())
            .finish()
    }
}

/// One matched descriptor and what it asks.
struct Planned {
    rule: Arc<Rule>,
    take: Take,
    /// Envoy's `is_negative_hits`: give tokens back instead of taking them.
    give_back: bool,
}

const ALLOWED: usize = 0;
const OVER_LIMIT: usize = 1;
const SHADOWED: usize = 2;

impl RateLimiter {
    pub fn new(node: Arc<Node>, metrics: Metrics) -> Self {
        let rules = Arc::new(ArcSwap::from_pointee(Rules {
            generation: u64::MAX,
            index: RuleIndex::default(),
            decisions: Vec::new(),
        }));
        Self {
            node,
            rules,
            metrics,
            access: None,
        }
    }

    /// The same limiter asking every call for a token of `access` that
    /// may acquire on the slots of the rules its descriptors match.
    pub fn with_access(self, access: Option<Arc<Access>>) -> Self {
        Self { access, ..self }
    }

    /// The rules of the configuration in force; rebuilt (rarely) after a
    /// reload.
    fn rules(&self) -> Arc<Rules> {
        let current = self.rules.load_full();
        if current.generation == self.node.slots().generation() {
            return current;
        }
        let (config, generation) = self.node.slots().config();
        let index = RuleIndex::build(&config);
        let decisions = index
            .rules()
            .iter()
            .map(|rule| {
                ["allowed", "over_limit", "shadowed"].map(|decision| {
                    self.metrics
                        .rls
                        .decisions
                        .get_or_create(&RlsRuleLabels {
                            domain: rule.domain.clone(),
                            rule: rule.name.clone(),
                            decision,
                        })
                        .clone()
                })
            })
            .collect();
        let fresh = Arc::new(Rules {
            generation,
            index,
            decisions,
        });
        self.rules.store(fresh.clone());
        fresh
    }

    /// Calls `take-all` or `release` on the rule's slot, at its owner.
    async fn call(&self, slot: u8, op: &str, take: &Take) -> Result<Taken, Status> {
        let call = CustomCall {
            slot: u32::from(slot),
            op: op.to_string(),
            payload: take.to_bytes(),
        };
        let payload = self.node.call(Origin::Client, call).await?;
        Taken::from_bytes(&payload)
            .map_err(|e| Status::internal(format!("slot {slot} answered `{op}` with {e}")))
    }

    async fn decide(
        &self,
        req: RateLimitRequest,
        grant: Option<&Grant>,
    ) -> Result<RateLimitResponse, Status> {
        check(&req)?;
        let rules = self.rules();
        let plan: Vec<Option<Planned>> = req
            .descriptors
            .iter()
            .map(|d| plan(&rules.index, &req.domain, req.hits_addend, d))
            .collect();
        if let (Some(access), Some(grant)) = (&self.access, grant) {
            for p in plan.iter().flatten() {
                access.allow(grant, Permission::Acquire, u32::from(p.rule.slot))?;
            }
        }
        let unmatched = plan.iter().filter(|p| p.is_none()).count();
        self.metrics.rls.unmatched.inc_by(unmatched as u64);

        let calls = plan.iter().flatten().map(|p| {
            let op = if p.give_back { OP_RELEASE } else { OP_TAKE_ALL };
            self.call(p.rule.slot, op, &p.take)
        });
        let answers = futures_util::future::join_all(calls).await;
        let refused = plan
            .iter()
            .flatten()
            .zip(&answers)
            .any(|(p, a)| matches!(a, Ok(t) if !t.granted && !p.rule.shadow && !p.give_back));
        let failed = answers.iter().find_map(|a| a.as_ref().err()).cloned();
        if refused || failed.is_some() {
            self.give_back(&plan, &answers).await;
        }
        if let Some(status) = failed {
            return Err(Status::unavailable(format!(
                "a rate limit slot could not answer: {}",
                status.message()
            )));
        }

        let mut answers = answers.into_iter().flatten();
        let statuses = plan
            .iter()
            .map(|p| {
                let Some(p) = p else {
                    return DescriptorStatus {
                        code: Code::Ok.into(),
                        ..Default::default()
                    };
                };
                let Some(taken) = answers.next() else {
                    return DescriptorStatus::default();
                };
                let decision = match (taken.granted || p.give_back, p.rule.shadow) {
                    (true, _) => ALLOWED,
                    (false, true) => SHADOWED,
                    (false, false) => OVER_LIMIT,
                };
                if let Some(counters) = rules.decisions.get(p.rule.id) {
                    counters[decision].inc();
                }
                status(&p.rule, &taken, decision == OVER_LIMIT)
            })
            .collect();
        Ok(RateLimitResponse {
            overall_code: (if refused { Code::OverLimit } else { Code::Ok }).into(),
            statuses,
            ..Default::default()
        })
    }

    /// Gives back what the request took, best effort: a refused request
    /// should consume nothing, but a failure here must not turn the answer
    /// into an error.
    async fn give_back(&self, plan: &[Option<Planned>], answers: &[Result<Taken, Status>]) {
        let releases = plan
            .iter()
            .flatten()
            .zip(answers)
            .filter(|(p, a)| !p.give_back && matches!(a, Ok(t) if t.granted))
            .map(|(p, _)| async move {
                if let Err(e) = self.call(p.rule.slot, OP_RELEASE, &p.take).await {
                    tracing::warn!(slot = p.rule.slot, rule = %p.rule.name, error = %e.message(), "could not give back the tokens of a refused rate limit request");
                }
            });
        futures_util::future::join_all(releases).await;
    }
}

/// The rule and tokens of one descriptor, or None if no rule matches.
fn plan(
    index: &RuleIndex,
    domain: &str,
    request_hits: u32,
    descriptor: &RateLimitDescriptor,
) -> Option<Planned> {
    let entries: Vec<(&str, &str)> = descriptor
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let rule = index.find(domain, &entries)?;
    let values: Vec<&str> = entries.iter().map(|&(_, v)| v).collect();
    let tokens = match descriptor.hits_addend.as_ref().map(|h| h.value) {
        Some(n) if n > 0 => n,
        _ if request_hits > 0 => u64::from(request_hits),
        _ => 1,
    };
    Some(Planned {
        rule: rule.clone(),
        take: Take {
            key: rule.bucket_key(&values),
            tokens,
        },
        give_back: descriptor.is_negative_hits,
    })
}

fn status(rule: &Rule, taken: &Taken, over: bool) -> DescriptorStatus {
    let unit = match rule.limit.period {
        Period::Second => Unit::Second,
        Period::Minute => Unit::Minute,
        Period::Hour => Unit::Hour,
    };
    let reset_ms = taken.reset_ms;
    DescriptorStatus {
        code: (if over { Code::OverLimit } else { Code::Ok }).into(),
        current_limit: Some(RateLimit {
            name: rule.name.clone(),
            requests_per_unit: rule.limit.requests_per_unit,
            unit: unit.into(),
        }),
        limit_remaining: u32::try_from(taken.remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(ProtoDuration {
            seconds: i64::try_from(reset_ms / 1000).unwrap_or(i64::MAX),
            nanos: i32::try_from((reset_ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        quota: None,
    }
}

/// Refuses what no rule could sensibly answer, naming the field and limit.
fn check(req: &RateLimitRequest) -> Result<(), Status> {
    let bad = |field: String, reason: String| {
        Err(Status::invalid_argument(format!("`{field}` {reason}")))
    };
    let text = |field: String, value: &str| {
        if value.is_empty() {
            bad(field, "must not be empty".into())
        } else if value.len() > MAX_TEXT_BYTES {
            bad(
                field,
                format!(
                    "is {} bytes long, at most {MAX_TEXT_BYTES} allowed",
                    value.len()
                ),
            )
        } else {
            Ok(())
        }
    };
    text("domain".into(), &req.domain)?;
    match req.descriptors.len() {
        0 => {
            return bad(
                "descriptors".into(),
                "must hold at least one descriptor".into(),
            );
        }
        n if n > MAX_DESCRIPTORS => {
            return bad(
                "descriptors".into(),
                format!("holds {n} descriptors, at most {MAX_DESCRIPTORS} allowed"),
            );
        }
        _ => {}
    }
    for (i, d) in req.descriptors.iter().enumerate() {
        match d.entries.len() {
            0 => {
                return bad(
                    format!("descriptors[{i}].entries"),
                    "must not be empty".into(),
                );
            }
            n if n > MAX_ENTRIES => {
                return bad(
                    format!("descriptors[{i}].entries"),
                    format!("holds {n} entries, at most {MAX_ENTRIES} allowed"),
                );
            }
            _ => {}
        }
        for (j, e) in d.entries.iter().enumerate() {
            text(format!("descriptors[{i}].entries[{j}].key"), &e.key)?;
            if e.value.len() > MAX_TEXT_BYTES {
                return bad(
                    format!("descriptors[{i}].entries[{j}].value"),
                    format!(
                        "is {} bytes long, at most {MAX_TEXT_BYTES} allowed",
                        e.value.len()
                    ),
                );
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl RateLimitService for RateLimiter {
    #[tracing::instrument(level = "debug", skip_all, fields(domain = %req.get_ref().domain, verb = "should_rate_limit"))]
    async fn should_rate_limit(
        &self,
        req: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let started = Instant::now();
        let grant = self
            .access
            .as_ref()
            .map(|access| auth::authenticate(access, &req, Permission::Acquire));
        let answer = match grant {
            Some(Err(refused)) => Err(refused),
            Some(Ok(grant)) => self.decide(req.into_inner(), Some(&grant)).await,
            None => self.decide(req.into_inner(), None).await,
        };
        let outcome = match &answer {
            Ok(r) if r.overall_code == i32::from(Code::OverLimit) => "over_limit",
            Ok(_) => "ok",
            Err(s) if s.code() == tonic::Code::InvalidArgument => "invalid",
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                "refused"
            }
            Err(_) => "unavailable",
        };
        let rls = &self.metrics.rls;
        rls.requests.get_or_create(&OutcomeLabels { outcome }).inc();
        rls.request_seconds.observe(started.elapsed().as_secs_f64());
        answer.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::google::protobuf::UInt64Value;
    use vss_config::SlotsConfig;

    fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "edge".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    fn refusal(req: &RateLimitRequest) -> String {
        let status = check(req).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_string()
    }

    #[test]
    fn bad_requests_name_the_field_and_the_limit() {
        let ok = request(vec![descriptor(&[("remote_address", "1.2.3.4")])]);
        assert!(check(&ok).is_ok());
        let mut no_domain = ok.clone();
        no_domain.domain.clear();
        assert_eq!(refusal(&no_domain), "`domain` must not be empty");
        assert_eq!(
            refusal(&request(vec![])),
            "`descriptors` must hold at least one descriptor"
        );
        assert_eq!(
            refusal(&request(vec![descriptor(&[("k", "v")]); 100])),
            "`descriptors` holds 100 descriptors, at most 32 allowed"
        );
        assert_eq!(
            refusal(&request(vec![descriptor(&[("k", "v")]), descriptor(&[])])),
            "`descriptors[1].entries` must not be empty"
        );
        assert_eq!(
            refusal(&request(vec![descriptor(&[("k", "v"), ("", "v")])])),
            "`descriptors[0].entries[1].key` must not be empty"
        );
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            refusal(&request(vec![descriptor(&[("k", &long)])])),
            "`descriptors[0].entries[0].value` is 1025 bytes long, at most 1024 allowed"
        );
    }

    #[test]
    fn hits_come_from_the_descriptor_then_the_request_then_one() {
        let config = SlotsConfig::from_yaml(
            "slots:\n- {id: 1, type: token-bucket, bucketSize: 9, period: second, rls: [{domain: edge, descriptor: [{key: ip}]}]}\n",
        )
        .expect("parses")
        .validate()
        .expect("valid");
        let index = RuleIndex::build(&config);
        let mut d = descriptor(&[("ip", "a")]);
        let tokens = |d: &RateLimitDescriptor, request_hits| {
            plan(&index, "edge", request_hits, d).map(|p| p.take.tokens)
        };
        assert_eq!(tokens(&d, 0), Some(1));
        assert_eq!(tokens(&d, 3), Some(3));
        d.hits_addend = Some(UInt64Value { value: 5 });
        assert_eq!(tokens(&d, 3), Some(5));
        d.hits_addend = Some(UInt64Value { value: 0 });
        assert_eq!(tokens(&d, 3), Some(3), "0 means unset");
        assert_eq!(tokens(&descriptor(&[("other", "a")]), 3), None);
    }
}
