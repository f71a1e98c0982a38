//! Client tokens on gRPC calls: the `authorization` metadata and the
//! connection's grant cache handed to the core's [`Access`].

use std::sync::Arc;

use tonic::Status;

use crate::core::access::{Access, Grant, Permission};
use crate::edge::connections::ClientConnection;

/// The caller's grant, from its `authorization` metadata.
pub fn authenticate<T>(
    access: &Access,
    req: &tonic::Request<T>,
    permission: Permission,
) -> Result<Arc<Grant>, Status> {
    let authorization = req.metadata().get("authorization").map(|v| v.as_bytes());
    let cache = req
        .extensions()
        .get::<ClientConnection>()
        .map(ClientConnection::grants);
    access
        .authenticate(authorization, cache, permission)
        .map_err(Status::from)
}

/// The caller's grant if it may do `permission` on `slot`.
pub fn check<T>(
    access: &Access,
    req: &tonic::Request<T>,
    permission: Permission,
    slot: u32,
) -> Result<Arc<Grant>, Status> {
    let grant = authenticate(access, req, permission)?;
    access.allow(&grant, permission, slot)?;
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access::tests::FILE;
    use crate::ops::metrics::AccessMetrics;

    fn call(token: Option<&str>, connection: Option<&ClientConnection>) -> tonic::Request<()> {
        let mut req = tonic::Request::new(());
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().expect("ascii");
            req.metadata_mut().insert("authorization", value);
        }
        if let Some(connection) = connection {
            req.extensions_mut().insert(connection.clone());
        }
        req
    }

    #[test]
    fn a_missing_or_unknown_token_is_unauthenticated() {
        let access = Access::from_yaml(FILE, AccessMetrics::default());
        let e = check(&access, &call(None, None), Permission::Acquire, 0).expect_err("no token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = check(
            &access,
            &call(Some("not-a-token-anyone-has"), None),
            Permission::Acquire,
            0,
        )
        .expect_err("unknown");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let allowed = check(
            &access,
            &call(Some("checkout-0123456789"), None),
            Permission::Acquire,
            1,
        )
        .expect("allowed");
        assert_eq!(allowed.name, "checkout");
    }

    #[tokio::test]
    async fn a_connection_keeps_its_grant_until_the_token_or_the_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, FILE).expect("write");
        let access = Access::load(path.clone(), AccessMetrics::default())
            .await
            .expect("loads");
        let connection = ClientConnection::new(1_000);
        let name = |token: &str| {
            authenticate(
                &access,
                &call(Some(token), Some(&connection)),
                Permission::Acquire,
            )
            .map(|g| g.name.clone())
            .map_err(|e| e.code())
        };
        assert_eq!(name("checkout-0123456789").as_deref(), Ok("checkout"));
        assert_eq!(name("checkout-0123456789").as_deref(), Ok("checkout"));
        // Another token on the same connection is its own.
        assert_eq!(name("ops-0123456789abcdef").as_deref(), Ok("ops"));
        assert_eq!(
            name("checkout-0123456789-and-more"),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(name("checkout-0123456789").as_deref(), Ok("checkout"));
        // Revoked: refused from the reload on, though it was cached.
        let without_checkout = FILE
            .split_once("  - name: ops")
            .map(|(_, ops)| format!("tokens:\n  - name: ops{ops}"))
            .expect("two entries");
        std::fs::write(&path, without_checkout).expect("write");
        assert!(access.reload().await.expect("reloads"));
        assert_eq!(
            name("checkout-0123456789"),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(name("ops-0123456789abcdef").as_deref(), Ok("ops"));
    }
}
