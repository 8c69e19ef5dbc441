//! The ACLs of the tree ochopod runs on (SPEC §6).
//!
//! With `OCHOPOD_ZK_AUTH`, every node ochopod creates is CREATOR_ALL + world READ ([`super::Acls`]).
//! A node that existed before keeps the ACL it was created with: a tree made by an anonymous
//! client (or by pods without credentials) stays `world:anyone:cdrwa`, and whoever reaches
//! ZooKeeper can then register pods, rewrite the snapshot, or plant a persistent node under
//! `leader/` that sorts first forever and so blocks every election.
//!
//! [`secure`] runs each time the sync loop sets the tree up, before the pod registers. With
//! credentials, it reads the ACL of `/ochopod`, `/ochopod/clusters`, the cluster's node and its
//! `pods`, `seqs`, `leader`, `snapshot`, `snapshot-parts` and `paused`. An entry is unsafe when it grants more than
//! READ to an identity other than ochopod's own digest (`world:anyone`, an `ip`, other
//! credentials). For each
//! such node, ochopod asks ZooKeeper to set its ACL to its own; ZooKeeper alone decides whether
//! this session may (it needs ADMIN on the node):
//! - allowed: the node is repaired, with a warning naming it and what was open;
//! - refused: [`ZkError::Unsafe`], fatal (exit 2), naming the node and the fix.
//!
//! Then, with or without credentials, the persistent nodes at the head of `leader/`'s queue are
//! deleted (ochopod only ever creates ephemeral nodes there), and a refusal is fatal in the same
//! way. A persistent node further back is deleted by the candidate behind it once it is the one
//! to wait for ([`super::election::wait_until_leader`]): a pod joining reads one node, not one
//! per candidate.
//!
//! Children of `pods/` and `seqs/` are left alone: an open one may be a real pod registered before
//! credentials were set (a rolling migration), and registrations are validated where they are read.
//! So are the parts under `snapshot-parts/`: whoever rewrites one makes the snapshot unreadable
//! (its digest), never different, and the next commit writes new ones with ochopod's ACL.

use zookeeper_client as zkc;

use super::paths::{ClusterPaths, CLUSTERS};
use super::{Client, ZkConfig, ZkError, AUTHED_ACLS};

/// Checks (and repairs when allowed) the ACLs of the cluster's nodes, and clears `leader/` of
/// persistent nodes. Errors from ZooKeeper are retried by the caller; [`ZkError::Unsafe`] is fatal.
pub async fn secure(client: &Client, paths: &ClusterPaths, cfg: &ZkConfig) -> Result<(), ZkError> {
    if let Some((user, password)) = &cfg.auth {
        let ours = digest_ids(user, password);
        secure_acls(client, paths, user, &ours).await?;
    }
    clear_leader(client, paths).await
}

async fn secure_acls(
    client: &Client,
    paths: &ClusterPaths,
    user: &str,
    ours: &[String],
) -> Result<(), ZkError> {
    let nodes = [
        "/ochopod".to_string(),
        CLUSTERS.to_string(),
        paths.root.clone(),
        paths.pods(),
        paths.seqs(),
        paths.leader(),
        paths.snapshot(),
        paths.snapshot_parts(),
        paths.paused(),
    ];
    // Pipelined: every read is sent at once.
    let reads: Vec<_> = nodes.iter().map(|p| (p, client.get_acl(p))).collect();
    for (path, read) in reads {
        let (acl, stat) = match read.await {
            Ok(r) => r,
            // Not created yet (the snapshot before the first configuration): ochopod creates it
            // with its own ACL.
            Err(zkc::Error::NoNode) => continue,
            Err(e) => return Err(ZkError::op("reading the ACL of", path)(e)),
        };
        let open: Vec<&zkc::Acl> = acl.iter().filter(|a| is_unsafe(a, ours)).collect();
        if open.is_empty() {
            continue;
        }
        let open = describe(&open);
        // The ACL version guards against a change between the read and the repair: the caller
        // retries on BadVersion, and reads again.
        match client.set_acl(path, &AUTHED_ACLS, Some(stat.aversion)).await {
            Ok(_) => tracing::warn!(
                path = %full_path(client, path),
                was = %open,
                "repaired the ACL of a node others could change: it is now readable by anyone, writable with OCHOPOD_ZK_AUTH only"
            ),
            Err(zkc::Error::NoAuth) => {
                return Err(ZkError::Unsafe {
                    path: full_path(client, path),
                    problem: format!(
                        "others than OCHOPOD_ZK_AUTH's user may change it ({open}) and these credentials may not change its ACL (no ADMIN permission)"
                    ),
                    fix: format!(
                        "with credentials that may (its owner's, or ZooKeeper's super user), run in zkCli `setAcl {} digest:{user}:<hash>:cdrwa,world:anyone:r` (<hash>: base64 of the SHA-1 of \"{user}:<password>\"), or delete the tree (`deleteall {}`)",
                        full_path(client, path),
                        full_path(client, &paths.root),
                    ),
                })
            }
            Err(e) => return Err(ZkError::op("repairing the ACL of", path)(e)),
        }
    }
    Ok(())
}

/// Deletes the persistent children of `leader/`: election nodes are ephemeral-sequential, so a
/// persistent one is foreign, and the smallest sequence under `leader/` would be its forever.
async fn clear_leader(client: &Client, paths: &ClusterPaths) -> Result<(), ZkError> {
    let dir = paths.leader();
    let names = match client.list_children(&dir).await {
        Ok(names) => names,
        Err(zkc::Error::NoNode) => return Ok(()),
        Err(e) => return Err(ZkError::op("listing", &dir)(e)),
    };
    // Only the head of the queue blocks the election now: one read, not one per candidate. A
    // persistent node further back is cleared by the candidate right behind it, when it becomes
    // the one to wait for (`election::wait_until_leader`).
    let mut queue: Vec<(i64, &String)> = names
        .iter()
        .filter_map(|n| super::paths::election_sequence(n).map(|s| (s, n)))
        .collect();
    queue.sort();
    for (_, name) in queue {
        let path = format!("{dir}/{name}");
        match client.check_stat(&path).await {
            Ok(Some(stat)) if stat.ephemeral_owner == 0 => clear_persistent(client, &path, &stat).await?,
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(e) => return Err(ZkError::op("reading", &path)(e)),
        }
    }
    Ok(())
}

/// Deletes a persistent node under `leader/` (`stat` as read): ochopod's election nodes are
/// ephemeral, and a persistent one would block every election once it is first in the queue.
/// [`ZkError::Unsafe`] when this session may not delete it, or it has children.
pub(crate) async fn clear_persistent(client: &Client, path: &str, stat: &zkc::Stat) -> Result<(), ZkError> {
    let refuse = |why: &str| {
        ZkError::Unsafe {
        path: full_path(client, path),
        problem: format!(
            "a persistent node under leader/ (ochopod's election nodes are ephemeral) would block every election, and {why}"
        ),
        fix: format!("delete it in zkCli: `deleteall {}`", full_path(client, path)),
    }
    };
    match client.delete(path, Some(stat.version)).await {
        Ok(()) => tracing::warn!(
            path = %full_path(client, path),
            "deleted a persistent node under leader/: it would have blocked every election"
        ),
        Err(zkc::Error::NoNode) => {}
        Err(zkc::Error::NoAuth) => return Err(refuse("this session may not delete it")),
        Err(zkc::Error::NotEmpty) => return Err(refuse("it has children")),
        Err(e) => return Err(ZkError::op("deleting", path)(e)),
    }
    Ok(())
}

/// Whether `acl` lets someone other than ochopod do more than read.
fn is_unsafe(acl: &zkc::Acl, ours: &[String]) -> bool {
    let beyond_read = (acl.permission() | zkc::Permission::READ) != zkc::Permission::READ;
    beyond_read && !(acl.scheme() == "digest" && ours.iter().any(|id| id == acl.id()))
}

/// The ids ZooKeeper gives `user:password` under the digest scheme: `user:base64(sha1(user:password))`,
/// and the SHA-256 form for servers set up with `zookeeper.DigestAuthenticationProvider.digestAlg`
/// (3.7 and later).
fn digest_ids(user: &str, password: &str) -> [String; 2] {
    use base64::Engine as _;
    use sha2::Digest as _;
    let secret = format!("{user}:{password}");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    [
        format!("{user}:{}", b64(&sha1::Sha1::digest(secret.as_bytes()))),
        format!("{user}:{}", b64(&sha2::Sha256::digest(secret.as_bytes()))),
    ]
}

/// `world:anyone:cdrwa, ip:10.0.0.1:rw`; a digest id shows its user only (the rest is a password
/// hash).
fn describe(acls: &[&zkc::Acl]) -> String {
    acls.iter()
        .map(|a| {
            let id = match a.scheme() {
                "digest" => a.id().split(':').next().unwrap_or(""),
                _ => a.id(),
            };
            format!("{}:{id}:{}", a.scheme(), letters(a.permission()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// zkCli's letters for a permission: `cdrwa`.
fn letters(p: zkc::Permission) -> String {
    use zkc::Permission as P;
    [
        (P::CREATE, 'c'),
        (P::DELETE, 'd'),
        (P::READ, 'r'),
        (P::WRITE, 'w'),
        (P::ADMIN, 'a'),
    ]
    .into_iter()
    .filter(|(bit, _)| p.has(*bit))
    .map(|(_, c)| c)
    .collect()
}

/// The path as zkCli sees it: under the chroot of the connect string, if any.
fn full_path(client: &Client, path: &str) -> String {
    match client.path() {
        "/" => path.to_string(),
        chroot => format!("{chroot}{path}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_match_zookeepers() {
        // As printed by ZooKeeper 3.8's `java ... server.auth.DigestAuthenticationProvider
        // ops:s3cret`, with the default digestAlg and with `-D...digestAlg=SHA-256`.
        assert_eq!(
            digest_ids("ops", "s3cret"),
            [
                "ops:CzCEOKcNDOImQNsA1kmK0V5DZ/A=",
                "ops:jVbBnDA0gqUzWz0hBFJtYvY26svawKkLIoPcP4XeW+4="
            ]
        );
    }

    #[test]
    fn more_than_read_for_anyone_but_ochopod_is_unsafe() {
        let ours = digest_ids("ops", "pw");
        let acl = |perm, scheme, id: &str| zkc::Acl::new(perm, zkc::AuthId::new(scheme, id));
        use zkc::Permission as P;
        assert!(!is_unsafe(&acl(P::READ, "world", "anyone"), &ours));
        assert!(!is_unsafe(&acl(P::ALL, "digest", &ours[0]), &ours));
        assert!(!is_unsafe(&acl(P::ALL, "digest", &ours[1]), &ours));
        assert!(is_unsafe(&acl(P::ALL, "world", "anyone"), &ours));
        assert!(is_unsafe(&acl(P::CREATE, "world", "anyone"), &ours));
        assert!(is_unsafe(&acl(P::WRITE | P::READ, "ip", "10.0.0.1"), &ours));
        assert!(is_unsafe(
            &acl(P::ALL, "digest", "ops:c29tZXRoaW5nIGVsc2U="),
            &ours
        ));
        assert!(!is_unsafe(&acl(P::NONE, "world", "anyone"), &ours));
    }

    #[test]
    fn descriptions_hide_password_hashes() {
        let a = zkc::Acl::new(zkc::Permission::ALL, zkc::AuthId::new("digest", "ops:abc="));
        let b = zkc::Acl::new(zkc::Permission::READ, zkc::AuthId::anyone());
        assert_eq!(describe(&[&a, &b]), "digest:ops:cdrwa, world:anyone:r");
    }
}
