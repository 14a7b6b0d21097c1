//! Every Redis key and channel name Plaza uses, in one place (the schema is
//! documented in docs/OPERATIONS.md).
//!
//! On a Redis Cluster a script or pipeline must stay within one hash slot,
//! so keys that one script touches together share a hash tag (the text in
//! `{}`):
//!
//! - a user's keys (account, mute, logged-in mark, resume tokens) are
//!   tagged with the lower-cased name, so a login or resume is one slot;
//! - room n's seats and its channel are tagged `{n}`, so the seat script
//!   publishes the enter atomically with the seat;
//! - the cluster's own bookkeeping (live nodes, each node's users, the
//!   directory, the id counter) is tagged `{nodes}`: one slot.
//!
//! On a single Redis (or Sentinel) the user keys keep their untagged names,
//! so existing accounts are found as before; the cluster's keys are tagged
//! on both, as they are rebuilt from the live nodes.

/// The start of a node hash's field for a held seat: `held <name>` (a name
/// has no space, so it is never a user's field).
pub(crate) const HELD: &str = "held ";

/// Key and channel names under a prefix (`plaza:` by default).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    /// Redis Cluster: user keys are hash-tagged.
    tagged: bool,
}

impl Keys {
    pub(crate) fn new(prefix: &str, tagged: bool) -> Self {
        Self {
            prefix: prefix.to_owned(),
            tagged,
        }
    }

    /// A user's key of `kind` (`account`, `mute`, `online`, `folded`).
    pub(crate) fn user(&self, kind: &str, name: &str) -> String {
        let p = &self.prefix;
        if !self.tagged {
            return format!("{p}{kind}:{name}");
        }
        let lower = plaza_proto::name_key(name);
        if lower == name {
            format!("{p}{kind}:{{{lower}}}")
        } else {
            format!("{p}{kind}:{{{lower}}}:{name}")
        }
    }

    /// A resume token of `name`'s, by its digest (hex): never the token.
    pub(crate) fn token(&self, name: &str, digest: &str) -> String {
        let p = &self.prefix;
        if self.tagged {
            format!("{p}token:{{{}}}:{digest}", plaza_proto::name_key(name))
        } else {
            format!("{p}token:{digest}")
        }
    }

    /// Sorted set of live node ids, scored by when their heartbeat runs out.
    pub(crate) fn nodes(&self) -> String {
        format!("{}{{nodes}}:live", self.prefix)
    }

    /// Counter that hands out node ids.
    pub(crate) fn node_seq(&self) -> String {
        format!("{}{{nodes}}:seq", self.prefix)
    }

    /// Hash of node `id`'s users: name → `uid|room`; and the seats it holds
    /// for users who dropped and may come back: [`HELD`] name → `uid|room`.
    pub(crate) fn node(&self, id: impl std::fmt::Display) -> String {
        format!("{}{{nodes}}:node:{id}", self.prefix)
    }

    /// The directory: every logged-in name.
    pub(crate) fn users(&self) -> String {
        format!("{}{{nodes}}:users", self.prefix)
    }

    /// Hash of room `room`'s members on every node: uid → `node|name`.
    pub(crate) fn seats(&self, room: u32) -> String {
        format!("{}seats:{{{room}}}", self.prefix)
    }

    /// Hash of room `room`'s numbering while its members are on several
    /// nodes: `e` its epoch, `s` its last message's number (in its seats'
    /// slot).
    pub(crate) fn numbering(&self, room: u32) -> String {
        format!("{}numbering:{{{room}}}", self.prefix)
    }

    /// Hash of room `room`'s topic: `at` when it was set (Unix µs), `m`
    /// the bus message that set it (in its seats' slot).
    pub(crate) fn topic(&self, room: u32) -> String {
        format!("{}topic:{{{room}}}", self.prefix)
    }

    /// Hash of room `room`'s modes: `at` when they were set (Unix µs), `m`
    /// the bus message that set them, `l` the member limit and `k` the key
    /// (in its seats' slot).
    pub(crate) fn modes(&self, room: u32) -> String {
        format!("{}modes:{{{room}}}", self.prefix)
    }

    /// Set of the name keys invited into room `room` and not entered yet
    /// (in its seats' slot).
    pub(crate) fn invites(&self, room: u32) -> String {
        format!("{}invites:{{{room}}}", self.prefix)
    }

    /// Hash of room `room`'s members' roles: member id → roles bits (in
    /// its seats' slot).
    pub(crate) fn roles(&self, room: u32) -> String {
        format!("{}roles:{{{room}}}", self.prefix)
    }

    /// Stream of room `room`'s recent messages, as the room's channel
    /// carried them (in its seats' slot).
    pub(crate) fn log(&self, room: u32) -> String {
        format!("{}log:{{{room}}}", self.prefix)
    }

    /// Channel every node follows.
    pub(crate) fn bus(&self) -> String {
        format!("{}bus", self.prefix)
    }

    /// Room `room`'s channel (in its seats' slot).
    pub(crate) fn room(&self, room: u32) -> String {
        format!("{}room:{{{room}}}", self.prefix)
    }

    /// The start of every node's own channel's name.
    pub(crate) fn to_prefix(&self) -> String {
        format!("{}to:", self.prefix)
    }

    /// Node `id`'s own channel.
    pub(crate) fn to(&self, id: u64) -> String {
        format!("{}to:{id}", self.prefix)
    }

    /// The channel or key prefix this was built with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether user keys are hash-tagged (a Redis Cluster).
    pub(crate) fn tagged(&self) -> bool {
        self.tagged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primary::hash_tag;

    #[test]
    fn what_one_script_touches_shares_a_slot_on_a_cluster() {
        let k = Keys::new("plaza:", true);
        // A registration of "Amy" checks "amy" too; a resume swaps tokens.
        let amy = [
            k.user("account", "Amy"),
            k.user("account", "amy"),
            k.user("folded", "amy"),
            k.user("online", "Amy"),
            k.user("mute", "Amy"),
            k.token("Amy", "00ff"),
        ];
        assert!(amy.iter().all(|key| hash_tag(key) == "amy"), "{amy:?}");
        let room = [k.room(7), k.numbering(7), k.log(7)];
        assert!(
            room.iter().all(|key| hash_tag(key) == hash_tag(&k.seats(7))),
            "{room:?}"
        );
        let nodes = [k.nodes(), k.node_seq(), k.node(3), k.users()];
        assert!(nodes.iter().all(|key| hash_tag(key) == "nodes"), "{nodes:?}");
    }

    #[test]
    fn a_single_redis_keeps_the_user_keys_it_always_had() {
        let k = Keys::new("plaza:", false);
        assert_eq!(k.user("account", "Amy"), "plaza:account:Amy");
        assert_eq!(k.token("Amy", "00ff"), "plaza:token:00ff");
    }
}
