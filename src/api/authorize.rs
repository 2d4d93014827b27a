//! Authorization: the one check per API that runs before (or inside) its handler, as
//! Kafka's StandardAuthorizer decides it from the ACLs in the metadata image, so every
//! broker of a cluster enforces the same set as soon as the quorum commits it.
//!
//! `authorizer.class.name` empty turns this off (everything allowed, as before);
//! `super.users` may do anything; `allow.everyone.if.no.acl.found` allows an action on
//! a resource that no ACL names at all.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::BrokerConfig;
use crate::metadata::acl::{
    AclSet, Decision, Operation, ResourceType, CLUSTER_RESOURCE_NAME, WILDCARD_PRINCIPAL,
};
use crate::metadata::ClusterImage;
use crate::protocol::Request;

/// The broker-wide authorizer settings.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    enabled: bool,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
}

impl Authorizer {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Authorizer {
            enabled: !config.get("authorizer.class.name").trim().is_empty(),
            super_users: config
                .get("super.users")
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            allow_if_no_acl: config
                .get("allow.everyone.if.no.acl.found")
                .trim()
                .eq_ignore_ascii_case("true"),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// What `request`'s sender may do, against the ACLs of the current `image` (only
    /// looked at when authorization is on).
    pub fn access(&self, request: &Request, image: impl FnOnce() -> Arc<ClusterImage>) -> Access {
        if !self.enabled {
            return Access::unrestricted();
        }
        let image = image();
        let principal = request.principal.clone();
        let host: Arc<str> = Arc::from(request.client_host.trim_start_matches('/'));
        Access {
            everything: !self.enabled
                || self.super_users.contains(&*principal)
                || self.super_users.contains(WILDCARD_PRINCIPAL),
            allow_if_no_acl: self.allow_if_no_acl,
            acls: image.acls.clone(),
            principal,
            host,
        }
    }
}

/// One request's sender and the ACLs in force when it arrived.
#[derive(Debug, Clone)]
pub struct Access {
    /// No authorizer, or a super user.
    everything: bool,
    allow_if_no_acl: bool,
    acls: Arc<AclSet>,
    principal: Arc<str>,
    host: Arc<str>,
}

impl Access {
    /// Everything allowed (for tests and internal callers).
    pub fn unrestricted() -> Self {
        static SHARED: std::sync::LazyLock<Access> = std::sync::LazyLock::new(|| Access {
            everything: true,
            allow_if_no_acl: true,
            acls: Arc::default(),
            principal: crate::protocol::anonymous(),
            host: Arc::from(""),
        });
        SHARED.clone()
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// May the sender do `operation` on the resource `name` of `resource_type`?
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        if self.everything {
            return true;
        }
        match self
            .acls
            .decide(&self.principal, &self.host, operation, resource_type, name)
        {
            Decision::Allowed => true,
            Decision::Denied => false,
            Decision::NoAclFound => self.allow_if_no_acl,
        }
    }

    pub fn topic(&self, operation: Operation, topic: &str) -> bool {
        self.allows(operation, ResourceType::Topic, topic)
    }

    pub fn group(&self, operation: Operation, group: &str) -> bool {
        self.allows(operation, ResourceType::Group, group)
    }

    pub fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    pub fn transactional_id(&self, operation: Operation, id: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, id)
    }

    /// May the sender do `operation` on some resource of the type (Kafka's
    /// `authorizeByResourceType`, e.g. WRITE on any topic for an idempotent producer)?
    pub fn allows_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        // Kafka first asks about a made-up name: a super user, a `*` ACL, or the
        // no-ACL default when nothing covers that name.
        self.allows(operation, resource_type, "hardcode")
            || self
                .acls
                .allows_any(&self.principal, &self.host, operation, resource_type)
    }

    /// The `authorized_operations` bit field of a resource: bit N set when the sender
    /// may do the operation whose code is N, over the operations of its type.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        resource_type
            .supported_operations()
            .iter()
            .filter(|op| self.allows(**op, resource_type, name))
            .fold(0i32, |bits, op| bits | (1 << op.code()))
    }
}
