//! A session's replies in the order of its lines, and IRCv3
//! labeled-response: what answered a labeled line goes back under its
//! label (one line), as an `ACK` (none) or in a `labeled-response` batch.
//!
//! A line's requests go to the hub and come back as answers, one response
//! event each, in order; a reply written here at once (a PONG, a WHO) must
//! not overtake the answers to the lines before it, as clients that send
//! PING to synchronise rely on. So a line that asked the hub something, or
//! that came while earlier lines wait, waits too ([`Pending`]): the
//! answers' lines leave as they come (a labeled line's when the last is
//! in), then the line's own replies. Everything handed in here is already
//! in the session's form (server-time's tag included); a label is the one
//! thing added.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};

use super::Caps;
use super::line;

#[derive(Debug, Default)]
pub(crate) struct Order {
    /// Requests sent to the hub, and responses that came back.
    asked: u64,
    answered: u64,
    /// Lines still waiting for answers, oldest first.
    waiting: VecDeque<Pending>,
    /// Batch references handed out on this connection.
    batches: u64,
}

#[derive(Debug)]
struct Pending {
    /// The `asked` count at which its answers are all in.
    until: u64,
    label: Option<Box<str>>,
    /// What the hub's answers to it (and what came with them) wrote.
    answers: BytesMut,
    /// What the line wrote at once.
    replies: BytesMut,
    /// Room messages it sent that the sender hears back (echo-message):
    /// how many, how many the hub took, how many came back. Those taken
    /// are part of the answer: the line is finished when they are back
    /// (after the hub's answer on one node, before it in cluster mode).
    chats: u32,
    taken: u32,
    echoed: u32,
}

impl Pending {
    fn finished(&self, answered: u64) -> bool {
        self.until <= answered && self.echoed >= self.taken
    }
}

impl Order {
    /// A line sent `asked` requests, `chats` of them room messages the
    /// sender hears back, and wrote `replies`: what may leave now (empty
    /// when it waits).
    pub(crate) fn line(
        &mut self,
        caps: &Caps,
        server: &str,
        (asked, chats): (usize, usize),
        label: Option<&str>,
        replies: BytesMut,
    ) -> BytesMut {
        self.asked += asked as u64;
        let label = label.filter(|_| caps.labeled).map(Box::from);
        if self.waiting.is_empty() && self.answered >= self.asked {
            return self.finish(caps, server, label.as_deref(), replies);
        }
        if label.is_none() && replies.is_empty() && asked == 0 {
            return BytesMut::new();
        }
        self.waiting.push_back(Pending {
            until: self.asked,
            label,
            answers: BytesMut::new(),
            replies,
            chats: u32::try_from(chats).unwrap_or(u32::MAX),
            taken: 0,
            echoed: 0,
        });
        BytesMut::new()
    }

    /// The line the next answer is for.
    fn answering(&mut self) -> Option<&mut Pending> {
        let answered = self.answered;
        self.waiting.iter_mut().find(|p| p.until > answered)
    }

    /// One response came back and wrote `b` (`taken`: a room message the
    /// sender will hear back): what may leave now (its line's lines if it
    /// was the last answer that line waited for, and any lines after it
    /// that waited only for it).
    pub(crate) fn answered(&mut self, caps: &Caps, server: &str, b: BytesMut, taken: bool) -> BytesMut {
        if let Some(p) = self.answering().filter(|_| taken) {
            p.taken += 1;
        }
        let mut out = self.with_answer(b);
        self.answered += 1;
        out.extend_from_slice(&self.flush(caps, server));
        out
    }

    /// The lines of every finished line at the front.
    fn flush(&mut self, caps: &Caps, server: &str) -> BytesMut {
        let mut out = BytesMut::new();
        while self.waiting.front().is_some_and(|p| p.finished(self.answered)) {
            if let Some(mut p) = self.waiting.pop_front() {
                p.answers.extend_from_slice(&p.replies);
                let done = self.finish(caps, server, p.label.as_deref(), p.answers);
                out.extend_from_slice(&done);
            }
        }
        out
    }

    /// The sender's own copy of one of its room messages (`lines`): what
    /// to send now, and whether that includes it (a labeled line's copy
    /// goes with its answer; any other's goes first, as it is, and then
    /// what waited for it).
    pub(crate) fn echo(&mut self, caps: &Caps, server: &str, lines: &[u8]) -> (BytesMut, bool) {
        let mut kept = false;
        if let Some(p) = self.waiting.iter_mut().find(|p| p.echoed < p.chats) {
            p.echoed += 1;
            if p.label.is_some() {
                p.answers.extend_from_slice(lines);
                kept = true;
            }
        }
        (self.flush(caps, server), kept)
    }

    /// Lines that answer the line being answered (a response's, a JOIN's
    /// member list): kept with a labeled line until it is finished, else
    /// they leave now.
    pub(crate) fn with_answer(&mut self, b: BytesMut) -> BytesMut {
        match self.answering() {
            Some(p) if p.label.is_some() => {
                p.answers.extend_from_slice(&b);
                BytesMut::new()
            }
            _ => b,
        }
    }

    /// Everything waiting, then `replies`: for a session about to close.
    pub(crate) fn all(&mut self, replies: BytesMut) -> BytesMut {
        let mut b = BytesMut::new();
        for p in self.waiting.drain(..) {
            b.extend_from_slice(&p.answers);
            b.extend_from_slice(&p.replies);
        }
        b.extend_from_slice(&replies);
        b
    }

    /// A new batch reference for this connection.
    pub(crate) fn batch(&mut self) -> String {
        self.batches += 1;
        format!("p{}", self.batches)
    }

    /// A finished line's `lines`, under its label if it has one: the one
    /// line tagged, an ACK for none, a batch for several (without the
    /// batch capability, several lines go unlabeled).
    fn finish(&mut self, caps: &Caps, server: &str, label: Option<&str>, lines: BytesMut) -> BytesMut {
        let Some(label) = label else {
            return lines;
        };
        let tag = format!("label={label}");
        match lines.iter().filter(|&&c| c == b'\n').count() {
            0 => {
                let mut b = BytesMut::new();
                b.put_u8(b'@');
                b.put_slice(tag.as_bytes());
                b.put_u8(b' ');
                line::put(&mut b, line::Prefix::Server(server), "ACK", &[]);
                b
            }
            1 => line::with_tag(&lines, &tag),
            _ if !caps.batch => lines,
            _ => {
                // The label goes on the batch's opening line only.
                let id = self.batch();
                let mut b = BytesMut::new();
                b.put_u8(b'@');
                b.put_slice(tag.as_bytes());
                b.put_u8(b' ');
                line::batch(&mut b, server, &id, &["labeled-response"], &lines);
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labeled() -> Caps {
        Caps {
            labeled: true,
            batch: true,
            ..Caps::default()
        }
    }

    fn text(b: &BytesMut) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn a_labeled_line_is_acked_tagged_or_batched_by_how_many_lines_answer_it() {
        let (caps, mut o) = (labeled(), Order::default());
        assert_eq!(
            text(&o.line(&caps, "s", (0, 0), Some("a"), BytesMut::new())),
            "@label=a :s ACK\r\n"
        );
        let one = BytesMut::from(&b":s PONG s :x\r\n"[..]);
        assert_eq!(
            text(&o.line(&caps, "s", (0, 0), Some("b"), one)),
            "@label=b :s PONG s :x\r\n"
        );
        // Two lines, one from the hub's answer and one written at once.
        let reply = BytesMut::from(&b":s 305 me :back\r\n"[..]);
        assert!(o.line(&caps, "s", (1, 0), Some("c"), reply).is_empty());
        let answer = BytesMut::from(&b"@time=t :s 401 me x :No such nick\r\n"[..]);
        assert_eq!(
            text(&o.answered(&caps, "s", answer, false)),
            "@label=c :s BATCH +p1 :labeled-response\r\n\
             @batch=p1;time=t :s 401 me x :No such nick\r\n\
             @batch=p1 :s 305 me :back\r\n\
             :s BATCH :-p1\r\n"
        );
    }

    #[test]
    fn a_reply_waits_for_the_answers_to_earlier_lines() {
        let (caps, mut o) = (Caps::default(), Order::default());
        assert!(o.line(&caps, "s", (1, 0), None, BytesMut::new()).is_empty());
        let pong = BytesMut::from(&b"PONG\r\n"[..]);
        assert!(o.line(&caps, "s", (0, 0), Some("x"), pong).is_empty());
        let join = BytesMut::from(&b"JOIN\r\n"[..]);
        assert_eq!(text(&o.with_answer(join)), "JOIN\r\n");
        let out = o.answered(&caps, "s", BytesMut::new(), false);
        // Without the capability, the label is not used.
        assert_eq!(text(&out), "PONG\r\n");
        let a = BytesMut::from(&b"A\r\n"[..]);
        assert_eq!(text(&o.line(&caps, "s", (0, 0), None, a)), "A\r\n");
    }

    #[test]
    fn a_line_that_sent_room_messages_is_finished_when_its_own_copies_are_back() {
        let (caps, server) = (labeled(), "s");
        let copy = b"@msgid=m :me PRIVMSG #1 :hi\r\n";
        // One node: the answer, then the copy; a PING behind waits for it.
        let mut o = Order::default();
        assert!(o.line(&caps, server, (1, 1), None, BytesMut::new()).is_empty());
        let pong = BytesMut::from(&b":s PONG s :x\r\n"[..]);
        assert!(o.line(&caps, server, (0, 0), None, pong).is_empty());
        assert!(o.answered(&caps, server, BytesMut::new(), true).is_empty());
        let (out, kept) = o.echo(&caps, server, copy);
        assert_eq!((text(&out), kept), (":s PONG s :x\r\n", false));

        // Cluster mode: two labeled lines' copies come before their
        // answers, and each goes with its own line.
        let mut o = Order::default();
        assert!(
            o.line(&caps, server, (1, 1), Some("a"), BytesMut::new())
                .is_empty()
        );
        assert!(
            o.line(&caps, server, (1, 1), Some("b"), BytesMut::new())
                .is_empty()
        );
        assert_eq!(o.echo(&caps, server, copy), (BytesMut::new(), true));
        assert_eq!(o.echo(&caps, server, copy), (BytesMut::new(), true));
        let a = o.answered(&caps, server, BytesMut::new(), true);
        assert_eq!(text(&a), "@label=a;msgid=m :me PRIVMSG #1 :hi\r\n");
        let b = o.answered(&caps, server, BytesMut::new(), true);
        assert_eq!(text(&b), "@label=b;msgid=m :me PRIVMSG #1 :hi\r\n");

        // A refused message has no copy: its line does not wait for one.
        let mut o = Order::default();
        assert!(
            o.line(&caps, server, (1, 1), Some("c"), BytesMut::new())
                .is_empty()
        );
        let refused = BytesMut::from(&b":s 404 me #1 :muted\r\n"[..]);
        let out = o.answered(&caps, server, refused, false);
        assert_eq!(text(&out), "@label=c :s 404 me #1 :muted\r\n");
    }
}
