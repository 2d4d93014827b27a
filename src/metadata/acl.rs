//! ACLs as the quorum stores them, and the matching rules of Kafka's StandardAuthorizer
//! over them: which bindings apply to a resource, DENY over ALLOW, READ/WRITE/DELETE/
//! ALTER imply DESCRIBE and ALTER_CONFIGS implies DESCRIBE_CONFIGS (for ALLOW only),
//! `User:*` and host `*` as wildcards, a LITERAL `*` name for every resource of a type,
//! PREFIXED names for every resource that starts with them.
//!
//! The codes are Kafka's wire codes (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType`), so the API layer converts with `from_code`/`code`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The name of the one CLUSTER resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// A LITERAL resource name matching every resource of its type; a principal or host
/// matching every principal or host.
pub const WILDCARD: &str = "*";
/// `User:*`: every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant),+];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),+ }
            }

            /// The value of a wire code (none for UNKNOWN, ANY, MATCH and unknown codes).
            pub fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

coded_enum!(
    /// What an ACL protects.
    ResourceType {
        Topic = 2,
        Group = 3,
        Cluster = 4,
        TransactionalId = 5,
        DelegationToken = 6,
        User = 7,
    }
);

coded_enum!(
    /// How an ACL's resource name matches.
    PatternType { Literal = 3, Prefixed = 4 }
);

coded_enum!(
    /// What a principal may do.
    Operation {
        All = 2,
        Read = 3,
        Write = 4,
        Create = 5,
        Delete = 6,
        Alter = 7,
        Describe = 8,
        ClusterAction = 9,
        DescribeConfigs = 10,
        AlterConfigs = 11,
        IdempotentWrite = 12,
        CreateTokens = 13,
        DescribeTokens = 14,
    }
);

coded_enum!(
    /// Whether an ACL allows or denies.
    Permission { Deny = 2, Allow = 3 }
);

/// Wire codes meaning "any" in filters.
pub const ANY_CODE: i8 = 1;
/// The MATCH pattern filter: every binding that applies to the named resource.
pub const MATCH_CODE: i8 = 2;

impl ResourceType {
    /// The operations Kafka reports in `authorized_operations` for this type.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// One ACL: `principal` from `host` is `permission`ed to do `operation` on the
/// resource(s) `name` (by `pattern`) of `resource_type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern: PatternType,
    pub name: String,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Which bindings DescribeAcls and DeleteAcls select; `None` = any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// The pattern part of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    Any,
    /// Bindings that apply to the named resource: LITERAL of that name, LITERAL `*`
    /// and PREFIXED of a prefix of it.
    Match,
    Exactly(PatternType),
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (self.pattern, &self.name) {
            (PatternFilter::Match, Some(name)) => applies_to(b.pattern, &b.name, name),
            // MATCH with no name: any binding.
            (PatternFilter::Match, None) => true,
            (PatternFilter::Any, name) => name.as_ref().is_none_or(|n| *n == b.name),
            (PatternFilter::Exactly(p), name) => {
                p == b.pattern && name.as_ref().is_none_or(|n| *n == b.name)
            }
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Does a binding named `acl_name` with `pattern` apply to the resource `name`?
fn applies_to(pattern: PatternType, acl_name: &str, name: &str) -> bool {
    match pattern {
        PatternType::Literal => acl_name == name || acl_name == WILDCARD,
        PatternType::Prefixed => name.starts_with(acl_name),
    }
}

/// What the ACLs say about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// No ACL at all names the resource (for any principal): the authorizer's
    /// `allow.everyone.if.no.acl.found` decides.
    NoAclFound,
}

/// Bindings by resource name, for one (resource type, pattern type).
type ByName = BTreeMap<String, BTreeSet<AclBinding>>;

/// Every ACL of the cluster, indexed by resource pattern. Serialized as the list of
/// bindings (the index is rebuilt on load).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<AclBinding>", into = "Vec<AclBinding>")]
pub struct AclSet {
    /// Looked up by `&str` (no allocation per check): literal names exactly, prefixes
    /// by a range up to the name.
    by_resource: BTreeMap<(ResourceType, PatternType), ByName>,
    len: usize,
}

impl From<Vec<AclBinding>> for AclSet {
    fn from(bindings: Vec<AclBinding>) -> Self {
        let mut set = AclSet::default();
        for b in bindings {
            set.insert(b);
        }
        set
    }
}

impl From<AclSet> for Vec<AclBinding> {
    fn from(set: AclSet) -> Self {
        set.iter().cloned().collect()
    }
}

impl AclSet {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.by_resource
            .values()
            .flat_map(|names| names.values().flatten())
    }

    /// Adds a binding; `false` if it was there already.
    pub fn insert(&mut self, binding: AclBinding) -> bool {
        let added = self
            .by_resource
            .entry((binding.resource_type, binding.pattern))
            .or_default()
            .entry(binding.name.clone())
            .or_default()
            .insert(binding);
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes and returns every binding `filter` selects.
    pub fn remove_matching(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let mut removed = Vec::new();
        self.by_resource.retain(|_, names| {
            names.retain(|_, bindings| {
                bindings.retain(|b| {
                    let hit = filter.matches(b);
                    if hit {
                        removed.push(b.clone());
                    }
                    !hit
                });
                !bindings.is_empty()
            });
            !names.is_empty()
        });
        self.len -= removed.len();
        removed
    }

    /// The bindings that apply to the resource `name` of `resource_type`.
    fn applicable<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        use std::ops::Bound;
        let literals = self.by_resource.get(&(resource_type, PatternType::Literal));
        let literal = move |n: &str| literals.and_then(|m| m.get(n)).into_iter().flatten();
        let wildcard = (name != WILDCARD).then(|| literal(WILDCARD)).into_iter();
        // Every prefix of `name` sorts at or before it.
        let prefixed = self
            .by_resource
            .get(&(resource_type, PatternType::Prefixed))
            .into_iter()
            .flat_map(move |m| {
                m.range::<str, _>((Bound::Unbounded, Bound::Included(name)))
                    .filter(move |(prefix, _)| name.starts_with(prefix.as_str()))
                    .flat_map(|(_, bindings)| bindings)
            });
        literal(name).chain(wildcard.flatten()).chain(prefixed)
    }

    /// Kafka's StandardAuthorizer decision for `principal` (`User:alice`) connecting
    /// from `host` (the client's IP address) wanting `operation` on a resource.
    pub fn decide(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        let mut any_for_resource = false;
        let mut allowed = false;
        for b in self.applicable(resource_type, name) {
            any_for_resource = true;
            if !(b.principal == principal || b.principal == WILDCARD_PRINCIPAL)
                || !(b.host == host || b.host == WILDCARD)
            {
                continue;
            }
            if !operation_matches(b, operation) {
                continue;
            }
            match b.permission {
                // DENY wins over any ALLOW.
                Permission::Deny => return Decision::Denied,
                Permission::Allow => allowed = true,
            }
        }
        match (allowed, any_for_resource) {
            (true, _) => Decision::Allowed,
            (false, true) => Decision::Denied,
            (false, false) => Decision::NoAclFound,
        }
    }

    /// Is some resource of `resource_type` (any name) allowed `operation` by an ALLOW
    /// binding that no DENY of the same pattern overrides? Kafka's
    /// `authorizeByResourceType`, used where an API needs "WRITE on any topic".
    pub fn allows_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let applies = |b: &AclBinding| {
            b.resource_type == resource_type
                && (b.principal == principal || b.principal == WILDCARD_PRINCIPAL)
                && (b.host == host || b.host == WILDCARD)
                && (b.operation == operation || b.operation == Operation::All)
        };
        let denied: Vec<&AclBinding> = self
            .iter()
            .filter(|b| applies(b) && b.permission == Permission::Deny)
            .collect();
        // A DENY of a LITERAL `*` or a PREFIXED "" covers every name of the type.
        if denied.iter().any(|d| {
            (d.pattern == PatternType::Literal && d.name == WILDCARD)
                || (d.pattern == PatternType::Prefixed && d.name.is_empty())
        }) {
            return false;
        }
        self.iter()
            .filter(|b| applies(b) && b.permission == Permission::Allow)
            .any(|a| {
                !denied.iter().any(|d| match (a.pattern, d.pattern) {
                    (PatternType::Literal, PatternType::Literal) => a.name == d.name,
                    (PatternType::Literal, PatternType::Prefixed) => a.name.starts_with(&d.name),
                    (PatternType::Prefixed, PatternType::Prefixed) => a.name.starts_with(&d.name),
                    (PatternType::Prefixed, PatternType::Literal) => false,
                })
            })
    }
}

/// Does binding `b` speak about `wanted`? ALL covers everything; an ALLOW of READ,
/// WRITE, DELETE or ALTER also allows DESCRIBE, and one of ALTER_CONFIGS allows
/// DESCRIBE_CONFIGS; a DENY denies only its own operation (or ALL).
fn operation_matches(b: &AclBinding, wanted: Operation) -> bool {
    use Operation::*;
    if b.operation == All || b.operation == wanted {
        return true;
    }
    if b.permission == Permission::Deny {
        return false;
    }
    match wanted {
        Describe => matches!(b.operation, Read | Write | Delete | Alter),
        DescribeConfigs => b.operation == AlterConfigs,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        t: ResourceType,
        p: PatternType,
        name: &str,
        who: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: t,
            pattern: p,
            name: name.into(),
            principal: who.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: perm,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn decisions_follow_kafkas_rules() {
        let mut set = AclSet::default();
        assert_eq!(
            set.decide("User:a", "1.2.3.4", Read, Topic, "t"),
            Decision::NoAclFound
        );
        set.insert(acl(Topic, Literal, "t", "User:a", Read, Allow));
        assert_eq!(
            set.decide("User:a", "1.2.3.4", Read, Topic, "t"),
            Decision::Allowed
        );
        // READ implies DESCRIBE; not WRITE.
        assert_eq!(
            set.decide("User:a", "h", Describe, Topic, "t"),
            Decision::Allowed
        );
        assert_eq!(
            set.decide("User:a", "h", Write, Topic, "t"),
            Decision::Denied
        );
        // Another principal: the resource has ACLs, so no fallback.
        assert_eq!(
            set.decide("User:b", "h", Read, Topic, "t"),
            Decision::Denied
        );
        // Another topic has none.
        assert_eq!(
            set.decide("User:b", "h", Read, Topic, "u"),
            Decision::NoAclFound
        );
        // Prefixed ALLOW, literal DENY: DENY wins.
        set.insert(acl(Topic, Prefixed, "pay", "User:*", Write, Allow));
        assert_eq!(
            set.decide("User:c", "h", Write, Topic, "payments"),
            Decision::Allowed
        );
        set.insert(acl(Topic, Literal, "payments", "User:c", Write, Deny));
        assert_eq!(
            set.decide("User:c", "h", Write, Topic, "payments"),
            Decision::Denied
        );
        // A DENY of WRITE does not deny DESCRIBE (allowed through the prefixed WRITE).
        assert_eq!(
            set.decide("User:c", "h", Describe, Topic, "payments"),
            Decision::Allowed
        );
        // Wildcard literal name.
        set.insert(acl(Group, Literal, "*", "User:d", All, Allow));
        assert_eq!(
            set.decide("User:d", "h", Read, Group, "g1"),
            Decision::Allowed
        );
        // Host restriction.
        let mut hosted = acl(Topic, Literal, "h", "User:e", Read, Allow);
        hosted.host = "10.0.0.1".into();
        set.insert(hosted);
        assert_eq!(
            set.decide("User:e", "10.0.0.1", Read, Topic, "h"),
            Decision::Allowed
        );
        assert_eq!(
            set.decide("User:e", "10.0.0.2", Read, Topic, "h"),
            Decision::Denied
        );
        // ALTER_CONFIGS implies DESCRIBE_CONFIGS.
        set.insert(acl(
            Cluster,
            Literal,
            CLUSTER_RESOURCE_NAME,
            "User:f",
            AlterConfigs,
            Allow,
        ));
        assert_eq!(
            set.decide(
                "User:f",
                "h",
                DescribeConfigs,
                Cluster,
                CLUSTER_RESOURCE_NAME
            ),
            Decision::Allowed
        );
    }

    #[test]
    fn filters_select_and_remove() {
        let mut set = AclSet::default();
        set.insert(acl(Topic, Literal, "orders", "User:a", Read, Allow));
        set.insert(acl(Topic, Prefixed, "ord", "User:a", Write, Allow));
        set.insert(acl(Topic, Literal, "*", "User:b", Read, Allow));
        set.insert(acl(Group, Literal, "orders", "User:a", Read, Allow));
        assert!(!set.insert(acl(Group, Literal, "orders", "User:a", Read, Allow)));
        assert_eq!(set.len(), 4);
        let matching = AclFilter {
            resource_type: Some(Topic),
            name: Some("orders".into()),
            pattern: PatternFilter::Match,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        assert_eq!(set.iter().filter(|b| matching.matches(b)).count(), 3);
        let literal_only = AclFilter {
            pattern: PatternFilter::Exactly(Literal),
            ..matching.clone()
        };
        assert_eq!(set.iter().filter(|b| literal_only.matches(b)).count(), 1);
        let removed = set.remove_matching(&AclFilter {
            resource_type: None,
            name: None,
            pattern: PatternFilter::Any,
            principal: Some("User:a".into()),
            host: None,
            operation: None,
            permission: None,
        });
        assert_eq!(removed.len(), 3);
        assert_eq!(set.len(), 1);
        // Round trip through the serialized form.
        let json = serde_json::to_string(&set).unwrap();
        let back: AclSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn allows_any_respects_denies() {
        let mut set = AclSet::default();
        assert!(!set.allows_any("User:a", "h", Write, Topic));
        set.insert(acl(Topic, Prefixed, "app-", "User:a", Write, Allow));
        assert!(set.allows_any("User:a", "h", Write, Topic));
        set.insert(acl(Topic, Prefixed, "app", "User:a", Write, Deny));
        assert!(!set.allows_any("User:a", "h", Write, Topic));
    }
}
