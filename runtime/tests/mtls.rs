//! mTLS on the mesh port with real processes on loopback: certificates are
//! generated here (rcgen), written beside each instance, and rotated by
//! rewriting the files while the cluster serves.

mod pki;
mod process;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pki::{Ca, Leaf, write_atomic};
use process::{ProcessCluster, metric_value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Channel, Endpoint};
use vss_client::Acquire;
use vss_proto::v1::StatusRequest;
use vss_proto::v1::vss_client::VssClient;
use vss_wire::MeshConnector;

/// Slot 2 of the test config: 1,000 tokens a minute, 20 per acquire.
const LIMITER: u32 = 2;
/// Slot 0: 200 tokens, 100 a second; the steady load of the rotation test.
const BUCKET: u32 = 0;

/// Every test ends within this, processes killed.
async fn bounded(within: Duration, test: impl Future<Output = ()>) {
    tokio::time::timeout(within, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {within:?}"));
}

/// The three files of each instance, in a folder of their own.
struct CertFiles {
    dir: tempfile::TempDir,
}

impl CertFiles {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, i: usize, file: &str) -> PathBuf {
        self.dir.path().join(format!("{i}-{file}"))
    }

    fn write_leaf(&self, i: usize, leaf: &Leaf) {
        write_atomic(&self.path(i, "key.pem"), &leaf.key);
        write_atomic(&self.path(i, "cert.pem"), &leaf.cert);
    }

    fn write_ca(&self, i: usize, pems: &[String]) {
        write_atomic(&self.path(i, "ca.pem"), &pems.concat());
    }

    fn args(&self, i: usize) -> Vec<String> {
        let path = |f: &str| self.path(i, f).display().to_string();
        vec![
            "--mesh-tls-cert".into(),
            path("cert.pem"),
            "--mesh-tls-key".into(),
            path("key.pem"),
            "--mesh-tls-ca".into(),
            path("ca.pem"),
        ]
    }
}

/// Starts `ids` with mTLS, instance `i` presenting `leaves[i]` and trusting
/// `cas[i]`.
fn start_with_tls(
    ids: &[&str],
    leaves: &[Leaf],
    cas: &[Vec<String>],
) -> (ProcessCluster, CertFiles) {
    let files = CertFiles::new();
    let mut cluster = ProcessCluster::start_some(ids, &[]).expect("cluster");
    for i in 0..ids.len() {
        files.write_leaf(i, &leaves[i]);
        files.write_ca(i, &cas[i]);
        let args = files.args(i);
        cluster.set_own_args(i, &args.iter().map(String::as_str).collect::<Vec<_>>());
        cluster.spawn(i).expect("spawn");
    }
    (cluster, files)
}

fn client_config(ca: &Ca, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).expect("cert pem")],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key pem"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

fn tls_channel(addr: &str, config: Arc<rustls::ClientConfig>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector_lazy(MeshConnector::fixed(config))
}

/// A `Status` call on the mesh port over `channel`: the cheapest thing a
/// peer may ask.
async fn mesh_status(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = VssClient::new(channel);
    let call = client.status(StatusRequest {});
    match tokio::time::timeout(Duration::from_secs(3), call).await {
        Ok(reply) => reply.map(|_| ()),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer within 3s")),
    }
}

async fn counter(cluster: &ProcessCluster, i: usize, name: &str) -> f64 {
    metric_value(&cluster.metrics(i).await, name).unwrap_or(0.0)
}

/// Waits until every instance's `vss_mesh_tls_reloads_total` reaches `n`.
async fn wait_for_reloads(cluster: &ProcessCluster, n: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut counts = Vec::new();
        for i in 0..cluster.len() {
            counts.push(counter(cluster, i, "vss_mesh_tls_reloads_total").await);
        }
        if counts.iter().all(|c| *c >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reloads after {within:?}: {counts:?}, wanted {n} each"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_forms_and_forwards_over_mtls() {
    bounded(Duration::from_secs(90), async {
        let ca = Ca::new("cluster CA");
        let ids = ["a", "b", "c"];
        let leaves: Vec<Leaf> = ids.iter().map(|id| ca.leaf(id)).collect();
        let cas = vec![vec![ca.pem()]; 3];
        let (cluster, _files) = start_with_tls(&ids, &leaves, &cas);
        let table = cluster
            .settled(&[0, 1, 2], Duration::from_secs(30))
            .await
            .expect("the three instances agree on a routing table over mTLS");
        let leader = cluster.index_of(&table.leader);
        let owner = table
            .routes
            .iter()
            .find(|r| r.slot == LIMITER)
            .map(|r| cluster.index_of(&r.owner))
            .expect("slot 2 is routed");
        assert_ne!(leader, owner, "with 3 instances the leader owns no slot");

        // Through the leader, which forwards to the owner over the mesh.
        let reply = cluster
            .client(leader)
            .acquire(LIMITER, Acquire::default())
            .await
            .expect("acquire through a non-owner");
        assert_eq!((reply.granted, reply.remaining), (20, 980));
        assert_eq!(cluster.slot_calls(leader, LIMITER).await, 0);
        assert_eq!(cluster.slot_calls(owner, LIMITER).await, 1);

        let metrics = cluster.metrics(0).await;
        let expiry = metric_value(&metrics, "vss_mesh_tls_cert_expiry_seconds").unwrap_or(0.0);
        assert!(expiry > 1.7e9, "expiry gauge: {expiry}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_on_the_mesh_port() {
    bounded(Duration::from_secs(60), async {
        let ca = Ca::new("cluster CA");
        let (cluster, _files) = start_with_tls(&["a"], &[ca.leaf("a")], &[vec![ca.pem()]]);
        cluster
            .wait_for_table(&[0], Duration::from_secs(20), |t| t.epoch >= 1)
            .await
            .expect("ready");
        let mesh = cluster.mesh_addr(0);

        // Plaintext HTTP/2, as before mTLS.
        let plain = Endpoint::from_shared(cluster.mesh_url(0))
            .expect("endpoint")
            .connect_lazy();
        let refused = mesh_status(plain)
            .await
            .expect_err("plaintext on the mesh port");
        println!("plaintext: {refused:?}");

        // TLS that trusts the server but presents no certificate.
        let anonymous = tls_channel(&mesh, client_config(&ca, None));
        let refused = mesh_status(anonymous)
            .await
            .expect_err("TLS without a client certificate");
        println!("no certificate: {refused:?}");

        // The same with a certificate of the cluster's CA is served: the
        // refusals above are the certificate's doing.
        let peer = tls_channel(&mesh, client_config(&ca, Some(&ca.leaf("operator"))));
        mesh_status(peer)
            .await
            .expect("a client of the cluster's CA");

        // The client port stays plaintext.
        cluster.status(0).await.expect("status on the client port");
        let failures = counter(&cluster, 0, "vss_mesh_tls_handshake_failures_total").await;
        assert!(failures >= 2.0, "handshake failures counted: {failures}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_signed_by_another_ca_is_refused() {
    bounded(Duration::from_secs(90), async {
        let ca = Ca::new("cluster CA");
        let other = Ca::new("another CA");
        let ids = ["a", "b", "c"];
        // c's certificate is signed by another CA; c trusts both, so only
        // a and b refusing it keeps it out.
        let leaves = vec![ca.leaf("a"), ca.leaf("b"), other.leaf("c")];
        let cas = vec![vec![ca.pem()], vec![ca.pem()], vec![ca.pem(), other.pem()]];
        let (cluster, _files) = start_with_tls(&ids, &leaves, &cas);
        let table = cluster
            .settled(&[0, 1], Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "a and b agree on a table without c: {e}\na's log:\n{}",
                    cluster.log(0)
                )
            });
        assert!(!table.members.iter().any(|m| m == "c"), "{table:?}");
        // It stays so: c is never heard.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let table = cluster.table(0).await.expect("a's table");
        assert!(!table.members.iter().any(|m| m == "c"), "{table:?}");
        let failures = counter(&cluster, 0, "vss_mesh_tls_handshake_failures_total").await;
        assert!(failures >= 1.0, "a counted c's handshakes: {failures}");

        // A client of the other CA is refused too, one of the cluster's CA
        // is not.
        let stranger = tls_channel(
            &cluster.mesh_addr(0),
            client_config(&ca, Some(&other.leaf("stranger"))),
        );
        let refused = mesh_status(stranger)
            .await
            .expect_err("a certificate of another CA");
        println!("another CA: {refused:?}");
        let peer = tls_channel(
            &cluster.mesh_addr(0),
            client_config(&ca, Some(&ca.leaf("operator"))),
        );
        mesh_status(peer)
            .await
            .expect("a client of the cluster's CA");
    })
    .await;
}

// Any certificate of the cluster's CA passes the handshake; the instance id
// a peer claims must be one its certificate names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_names_another_instance_is_refused() {
    bounded(Duration::from_secs(90), async {
        let ca = Ca::new("cluster CA");
        let ids = ["a", "b", "c"];
        // c presents b's certificate.
        let leaves = vec![ca.leaf("a"), ca.leaf("b"), ca.leaf("b")];
        let (cluster, _files) = start_with_tls(&ids, &leaves, &vec![vec![ca.pem()]; 3]);
        let table = cluster
            .settled(&[0, 1], Duration::from_secs(30))
            .await
            .expect("a and b agree on a table without c");
        assert!(!table.members.iter().any(|m| m == "c"), "{table:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let table = cluster.table(0).await.expect("a's table");
        assert!(!table.members.iter().any(|m| m == "c"), "{table:?}");
        let refused = counter(&cluster, 0, "vss_refused_mesh_messages_total").await
            + counter(&cluster, 1, "vss_refused_mesh_messages_total").await;
        assert!(refused >= 1.0, "a and b counted c's messages: {refused}");
        let log = cluster.log(0) + &cluster.log(1);
        assert!(log.contains("not instance"), "a or b logged why:\n{log}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_to_a_new_ca_under_load_fails_no_call_and_retires_the_old_one() {
    bounded(Duration::from_secs(150), async {
        let old = Ca::new("old CA");
        let new = Ca::new("new CA");
        let ids = ["a", "b", "c"];
        let leaves: Vec<Leaf> = ids.iter().map(|id| old.leaf(id)).collect();
        let (mut cluster, files) = start_with_tls(&ids, &leaves, &vec![vec![old.pem()]; 3]);
        let table = cluster
            .settled(&[0, 1, 2], Duration::from_secs(30))
            .await
            .expect("the cluster forms with the old CA");
        let leader = cluster.index_of(&table.leader);
        let owner = table
            .routes
            .iter()
            .find(|r| r.slot == BUCKET)
            .map(|r| cluster.index_of(&r.owner))
            .expect("slot 0 is routed");

        // Steady load through the leader, which owns no slot: every call
        // crosses the mesh.
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let load = {
            let client = cluster.client(leader);
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.acquire(BUCKET, Acquire::default()).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.push(e.to_string());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                errors
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;

        // 1. Every instance trusts both CAs.
        for i in 0..3 {
            files.write_ca(i, &[old.pem(), new.pem()]);
        }
        wait_for_reloads(&cluster, 1.0, Duration::from_secs(15)).await;
        // 2. Every instance presents a certificate of the new CA.
        for (i, id) in ids.iter().enumerate() {
            files.write_leaf(i, &new.leaf(id));
        }
        wait_for_reloads(&cluster, 2.0, Duration::from_secs(15)).await;
        // 3. The old CA is retired.
        for i in 0..3 {
            files.write_ca(i, &[new.pem()]);
        }
        wait_for_reloads(&cluster, 3.0, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        stop.store(true, Ordering::Relaxed);
        let errors = load.await.expect("load loop");
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        println!("during rotation: {ok} calls served, {failed} failed");
        assert_eq!(failed, 0, "failed calls during rotation: {errors:?}");
        assert!(ok > 100, "the load ran: {ok} calls");
        assert_eq!(cluster.slot_calls(leader, BUCKET).await, 0, "all forwarded");
        // The leader answers from tokens it leased from the owner, from a
        // denial the owner told it of, or forwards: either way every answer
        // came across the mesh.
        let metrics = cluster.metrics(leader).await;
        let local = |name: &str| {
            metric_value(&metrics, &format!("{name}{{slot=\"{BUCKET}\"}}")).unwrap_or(0.0) as u64
        };
        let answered_here = local("vss_lease_decisions_total") + local("vss_local_denials_total");
        let owned = cluster.slot_calls(owner, BUCKET).await;
        assert!(
            owned + answered_here >= ok,
            "{owned} owner calls + {answered_here} answered from leases and denials < {ok} served"
        );

        // A certificate of the old CA no longer opens the mesh port; one
        // of the new CA does.
        let mesh = cluster.mesh_addr(owner);
        let retired = tls_channel(&mesh, client_config(&new, Some(&old.leaf("operator"))));
        let refused = mesh_status(retired)
            .await
            .expect_err("a certificate of the retired CA");
        println!("old CA after rotation: {refused:?}");
        let current = tls_channel(&mesh, client_config(&new, Some(&new.leaf("operator"))));
        mesh_status(current)
            .await
            .expect("a certificate of the new CA");
        // And trusting only the old CA, the server's new certificate fails.
        let stale = tls_channel(&mesh, client_config(&old, Some(&old.leaf("operator"))));
        mesh_status(stale)
            .await
            .expect_err("a client that still trusts only the old CA");

        // New mesh connections work with the new set: a restarted instance
        // (which holds no connection from before) gets the leader's table
        // and forwards to an owner.
        let restarted = (leader + 1) % 3;
        cluster.kill(restarted);
        cluster.spawn(restarted).expect("respawn");
        let table = cluster
            .wait_for_table(&[0, 1, 2], Duration::from_secs(30), |t| {
                t.members.len() == 3
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the restarted instance rejoins with the new certificates: {e}\nits log:\n{}",
                    cluster.log(restarted)
                )
            });
        let elsewhere = table
            .routes
            .iter()
            .find(|r| {
                (r.slot == LIMITER || r.slot == BUCKET) && cluster.index_of(&r.owner) != restarted
            })
            .map(|r| r.slot)
            .expect("a slot the restarted instance does not own");
        cluster
            .client(restarted)
            .acquire(elsewhere, Acquire::default())
            .await
            .expect("the restarted instance forwards over the new certificates");
        assert_eq!(
            cluster.slot_calls(restarted, elsewhere).await,
            0,
            "forwarded"
        );
    })
    .await;
}

#[tokio::test]
async fn a_partial_set_of_tls_flags_is_refused_naming_the_missing_ones() {
    let out = ProcessCluster::run_once(&["--mesh-tls-cert", "cert.pem"]).expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--mesh-tls-key") && stderr.contains("--mesh-tls-ca"),
        "stderr: {stderr}"
    );

    let out = ProcessCluster::run_once(&[
        "--mesh-tls-cert",
        "/nonexistent/cert.pem",
        "--mesh-tls-key",
        "/nonexistent/key.pem",
        "--mesh-tls-ca",
        "/nonexistent/ca.pem",
    ])
    .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read --mesh-tls-cert /nonexistent/cert.pem"),
        "stderr: {stderr}"
    );
}
