//! What `plaza chat` prints for each notification.

use plaza_proto::Event;

use super::{Session, is_drop};

impl Session {
    pub(super) fn show(&mut self, event: &Event) {
        let text = match event {
            Event::RoomNewUser { uid, name } => {
                self.names.insert(*uid, name.clone());
                format!("* {name} joined the room")
            }
            Event::RoomLeaveUser { uid } => format!(
                "* {} left the room",
                self.names.remove(uid).unwrap_or_else(|| format!("user {uid}"))
            ),
            Event::RoomChat { name, message } | Event::RoomMessage { name, message, .. } => {
                format!("[{name}] {message}")
            }
            Event::RoomNotice { name, message, .. } => format!("-{name}- {message}"),
            Event::RoomTopic { by, topic, .. } if topic.is_empty() => format!("* {by} cleared the topic"),
            Event::RoomTopic { by, topic, .. } => format!("* topic (set by {by}): {topic}"),
            // The room's operators as you enter: the list says enough.
            // The members' roles as you enter: the list says enough.
            Event::RoomRole { by, .. } if by.is_empty() => return,
            Event::RoomRole { uid, roles, by, .. } => {
                let who = self
                    .names
                    .get(uid)
                    .cloned()
                    .unwrap_or_else(|| format!("user {uid}"));
                let role = match (
                    roles & plaza_proto::roles::OPERATOR != 0,
                    roles & plaza_proto::roles::VOICE != 0,
                ) {
                    (true, true) => "an operator, and voiced",
                    (true, false) => "an operator",
                    (false, true) => "voiced",
                    (false, false) => "no operator, and not voiced",
                };
                format!("* {by} made {who} {role}")
            }
            Event::RoomMode { by, .. } if by.is_empty() => return,
            Event::RoomMode {
                flags,
                limit,
                key,
                by,
                ..
            } => {
                let mut set = Vec::new();
                if flags & plaza_proto::room_modes::TOPIC != 0 {
                    set.push("only operators set the topic".to_owned());
                }
                if flags & plaza_proto::room_modes::MODERATED != 0 {
                    set.push("only operators and voiced members speak".to_owned());
                }
                if flags & plaza_proto::room_modes::SECRET != 0 {
                    set.push("secret".to_owned());
                }
                if flags & plaza_proto::room_modes::INVITE_ONLY != 0 {
                    set.push("invite-only".to_owned());
                }
                if *limit > 0 {
                    set.push(format!("at most {limit} members"));
                }
                if !key.is_empty() {
                    set.push(format!("key {key}"));
                }
                let set = if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                };
                format!("* {by} set the room's modes: {set}")
            }
            Event::RoomInvite { room, by } => format!("* {by} invites you into room {room} (/join {room})"),
            Event::RoomKicked { name, by, reason, .. } => {
                let why = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                if *name == self.user {
                    self.room = None;
                    format!("* {by} put you out of the room{why}: you are in the lobby")
                } else {
                    format!("* {by} put {name} out of the room{why}")
                }
            }
            Event::Whisper { from, message } => format!("(whisper from {from}) {message}"),
            Event::WhisperNotice { from, message } => format!("(notice from {from}) {message}"),
            Event::Broadcast { from, message } => format!("[broadcast] {from}: {message}"),
            Event::Kicked { by } => {
                self.kicked = true;
                format!("* you were kicked by {by}")
            }
            Event::Muted { seconds: 0 } => "* you are no longer muted".into(),
            Event::Muted { seconds: u32::MAX } => "* you are muted".into(),
            Event::Muted { seconds } => format!("* you are muted for {seconds} s"),
            Event::Notice { message } if !is_drop(event) => format!("* notice: {message}"),
            Event::Missed { count, .. } => {
                format!("* {count} room messages were dropped: you read too slowly")
            }
            _ => return,
        };
        println!("{text}");
    }
}
