//! IRC lines: parsing a client's (RFC 1459 with IRCv3 tags) and writing
//! the server's.

use bytes::{BufMut, BytesMut};

/// The longest line without its tags, CRLF included (RFC 1459).
pub(crate) const MAX_LINE: usize = 512;
/// The longest tag section a client may send (IRCv3 message-tags), with
/// its `@` and the space after it.
pub(crate) const MAX_TAGS: usize = 4096;
/// The longest `label` kept (labeled-response asks clients for at most
/// 64 bytes); a longer one is ignored, as if the line had none.
const MAX_LABEL: usize = 64;
/// Parameters a command may have (RFC 1459: 15).
const MAX_PARAMS: usize = 15;

/// One message from a client, borrowed from its line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// The command, as sent (compare with `eq_ignore_ascii_case`).
    pub(crate) command: &'a str,
    pub(crate) params: Vec<&'a str>,
    /// IRCv3 labeled-response's `label` tag, as sent (escaped). Other
    /// client tags are accepted and dropped (ISUPPORT `CLIENTTAGDENY=*`).
    pub(crate) label: Option<&'a str>,
}

/// Why a line is not a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineError {
    /// Blank: ignored.
    Empty,
    /// Over [`MAX_LINE`] without tags or [`MAX_TAGS`] of tags.
    TooLong,
    /// Not UTF-8.
    NotUtf8,
}

impl<'a> Message<'a> {
    pub(crate) fn param(&self, i: usize) -> Option<&'a str> {
        self.params.get(i).copied()
    }
}

/// Parses one line (its `\n` and any `\r` before it included or not).
pub(crate) fn parse(line: &[u8]) -> Result<Message<'_>, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut rest = line;
    let mut label = None;
    if rest.first() == Some(&b'@') {
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        if end + 1 > MAX_TAGS {
            return Err(LineError::TooLong);
        }
        label = rest[1..end]
            .split(|&b| b == b';')
            .find_map(|tag| tag.strip_prefix(b"label="))
            .filter(|l| !l.is_empty() && l.len() <= MAX_LABEL);
        rest = &rest[(end + 1).min(rest.len())..];
    }
    // Checked with the rest of the line below.
    let label_bytes = label;
    if rest.len() + 2 > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let rest = std::str::from_utf8(rest).map_err(|_| LineError::NotUtf8)?;
    let label = match label_bytes {
        Some(l) => Some(std::str::from_utf8(l).map_err(|_| LineError::NotUtf8)?),
        None => None,
    };
    let mut rest = rest.trim_start_matches(' ');
    if rest.starts_with(':') {
        // A client's prefix is ignored (RFC 1459 2.3).
        rest = rest
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(LineError::Empty);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        if params.len() + 1 == MAX_PARAMS {
            params.push(rest);
            break;
        }
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p);
        rest = r;
    }
    Ok(Message {
        command,
        params,
        label,
    })
}

/// Text safe inside one line: no CR, LF or NUL (a Plaza message from a
/// binary client may hold them).
pub(crate) fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n', '\0']) {
        text.replace(['\r', '\n', '\0'], " ").into()
    } else {
        text.into()
    }
}

/// Writes `:prefix command params… :trailing\r\n`; the last parameter is
/// always written as trailing.
pub(crate) fn put(b: &mut BytesMut, prefix: Prefix<'_>, command: &str, params: &[&str]) {
    b.put_u8(b':');
    match prefix {
        Prefix::Server(name) => b.put_slice(name.as_bytes()),
        Prefix::User(nick) => {
            b.put_slice(nick.as_bytes());
            b.put_u8(b'!');
            b.put_slice(nick.as_bytes());
            b.put_u8(b'@');
            b.put_slice(USER_HOST.as_bytes());
        }
    }
    b.put_u8(b' ');
    b.put_slice(command.as_bytes());
    if let Some((last, middle)) = params.split_last() {
        for p in middle {
            b.put_u8(b' ');
            b.put_slice(p.as_bytes());
        }
        b.put_slice(b" :");
        b.put_slice(clean(last).as_bytes());
    }
    b.put_slice(b"\r\n");
}

/// Writes `ERROR :text\r\n`, the line before the server closes a link.
pub(crate) fn error(b: &mut BytesMut, text: &str) {
    b.put_slice(b"ERROR :");
    b.put_slice(clean(text).as_bytes());
    b.put_slice(b"\r\n");
}

/// Who a line is from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Prefix<'a> {
    /// The server, by its name.
    Server(&'a str),
    User(&'a str),
}

/// The server's name in its lines, unless `--irc-server-name` says.
pub(crate) const SERVER: &str = "plaza";
/// The host shown for every user (`nick!nick@plaza.users`): Plaza does
/// not show its users' addresses.
pub(crate) const USER_HOST: &str = "plaza.users";

/// `text` cut into pieces of at most `max` bytes, on character
/// boundaries (a Plaza message longer than an IRC line holds, or an IRC
/// line longer than a room message).
pub(crate) fn pieces(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, r) = rest.split_at(end);
        rest = r;
        Some(piece)
    })
}

/// IRCv3 server-time's tag for now, space included:
/// `@time=2026-12-06T21:05:03.123Z `.
pub(crate) fn time_tag() -> String {
    format!("@time={} ", time(std::time::SystemTime::now()))
}

/// `t` as server-time writes it: `2026-12-06T21:05:03.123Z`.
pub(crate) fn time(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil(secs.div_euclid(86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        since.subsec_millis()
    )
}

/// The date `days` after 1970-01-01 (the proleptic Gregorian calendar's
/// days-to-civil conversion; no date crate for one line's worth).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `lines` with `tag` before each line, and where each of `ends` (offsets
/// in `lines` at line ends) falls in the result.
pub(crate) fn tag_lines(lines: &[u8], tag: &str, ends: &[usize]) -> (BytesMut, Vec<usize>) {
    let mut b = BytesMut::with_capacity(lines.len() + 4 * tag.len());
    let mut moved = Vec::with_capacity(ends.len());
    let mut ends = ends.iter().peekable();
    let mut start = 0;
    for (i, _) in lines.iter().enumerate().filter(|(_, c)| **c == b'\n') {
        while ends.next_if(|&&e| e <= start).is_some() {
            moved.push(b.len());
        }
        b.put_slice(tag.as_bytes());
        b.put_slice(&lines[start..=i]);
        start = i + 1;
    }
    moved.extend(ends.map(|_| b.len()));
    (b, moved)
}

/// A batch (IRCv3 `batch`): `BATCH +id params...`, then `lines` each
/// tagged `batch=id` (a line of a batch nested in it keeps its own), then
/// `BATCH -id`.
pub(crate) fn batch(b: &mut BytesMut, server: &str, id: &str, params: &[&str], lines: &[u8]) {
    let open = format!("+{id}");
    let mut all = Vec::with_capacity(params.len() + 1);
    all.push(open.as_str());
    all.extend_from_slice(params);
    put(b, Prefix::Server(server), "BATCH", &all);
    b.extend_from_slice(&with_tag(lines, &format!("batch={id}")));
    put(b, Prefix::Server(server), "BATCH", &[&format!("-{id}")]);
}

/// `lines` with the tag `kv` (`key=value`, escaped) on each line: put
/// first in a line's tags, or as its only tag. A line that has that key
/// already keeps its own (a line of a batch nested in another).
pub(crate) fn with_tag(lines: &[u8], kv: &str) -> BytesMut {
    let key = kv.split_once('=').map_or(kv, |(k, _)| k).as_bytes();
    let has_key = |l: &[u8]| {
        let tags = l.split(|&c| c == b' ').next().unwrap_or_default();
        tags.split(|&c| c == b';')
            .any(|t| t.strip_prefix(b"@").unwrap_or(t).split(|&c| c == b'=').next() == Some(key))
    };
    let mut b = BytesMut::with_capacity(lines.len() + 4 * (kv.len() + 2));
    for l in lines.split_inclusive(|&c| c == b'\n') {
        if l.starts_with(b"@") && has_key(l) {
            b.put_slice(l);
            continue;
        }
        b.put_u8(b'@');
        b.put_slice(kv.as_bytes());
        match l.strip_prefix(b"@") {
            Some(tagged) => {
                b.put_u8(b';');
                b.put_slice(tagged);
            }
            None => {
                b.put_u8(b' ');
                b.put_slice(l);
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_tags_prefix_middle_and_trailing_parameters() {
        let m = parse(b"@a=b;label=1 :me PRIVMSG #1 :hello  there\r\n").unwrap();
        assert_eq!((m.command, m.label), ("PRIVMSG", Some("1")));
        assert_eq!(parse(b"@label= PING x\r\n").unwrap().label, None);
        assert_eq!(m.params, ["#1", "hello  there"]);
        let m = parse(b"USER u 0 *  :Real Name\n").unwrap();
        assert_eq!(m.params, ["u", "0", "*", "Real Name"]);
        assert_eq!(parse(b"PING\r\n").unwrap().params, Vec::<&str>::new());
        assert_eq!(parse(b"\r\n"), Err(LineError::Empty));
        assert_eq!(parse(b"   \r\n"), Err(LineError::Empty));
        assert_eq!(parse(b"PRIVMSG #1 :\xff\r\n"), Err(LineError::NotUtf8));
        let long = format!("PRIVMSG #1 :{}\r\n", "a".repeat(500));
        assert_eq!(parse(long.as_bytes()), Err(LineError::TooLong));
        let fifteen = "X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        assert_eq!(parse(fifteen.as_bytes()).unwrap().params.last(), Some(&"15 16"));
    }

    #[test]
    fn written_lines_end_in_crlf_and_carry_no_line_break_of_their_own() {
        let mut b = BytesMut::new();
        put(&mut b, Prefix::User("amy"), "PRIVMSG", &["#1", "a\r\nQUIT"]);
        assert_eq!(&b[..], b":amy!amy@plaza.users PRIVMSG #1 :a  QUIT\r\n");
        b.clear();
        put(&mut b, Prefix::Server(SERVER), "001", &["amy", "Welcome"]);
        assert_eq!(&b[..], b":plaza 001 amy :Welcome\r\n");
    }

    #[test]
    fn server_time_tags_every_line_and_says_the_date_right() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_793), (2026, 12, 6));
        let tag = time_tag();
        assert!(
            tag.starts_with("@time=20") && tag.ends_with("Z ") && tag.len() == 31,
            "{tag}"
        );
        let (b, ends) = tag_lines(b"A\r\nBB\r\nC\r\n", "@t ", &[3, 10]);
        assert_eq!(&b[..], b"@t A\r\n@t BB\r\n@t C\r\n");
        assert_eq!(ends, [6, 19]);
        let b = with_tag(b"A\r\n@time=t B\r\n", "label=x");
        assert_eq!(&b[..], b"@label=x A\r\n@label=x;time=t B\r\n");
        let b = with_tag(b"@batch=in;time=t C\r\n", "batch=out");
        assert_eq!(&b[..], b"@batch=in;time=t C\r\n");
    }

    #[test]
    fn pieces_split_on_character_boundaries() {
        let text = "ab\u{00e9}cd";
        assert_eq!(pieces(text, 3).collect::<Vec<_>>(), ["ab", "\u{00e9}c", "d"]);
        assert_eq!(pieces("", 3).count(), 0);
    }

    proptest::proptest! {
        /// Whatever a client sends, a line parses or is refused: no panic,
        /// and a parsed message is within the limits the commands assume.
        #[test]
        fn any_bytes_parse_or_are_refused(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
            if let Ok(m) = parse(&line) {
                proptest::prop_assert!(!m.command.is_empty());
                proptest::prop_assert!(m.params.len() <= MAX_PARAMS);
                proptest::prop_assert!(line.len() <= MAX_TAGS + MAX_LINE);
            }
        }

        /// What the server writes is one line, whatever the text holds.
        #[test]
        fn written_lines_are_single_lines(text in ".*", target in "[#a-z0-9]{1,10}") {
            let mut b = BytesMut::new();
            put(&mut b, Prefix::User("amy"), "PRIVMSG", &[&target, &text]);
            proptest::prop_assert!(b.ends_with(b"\r\n"));
            proptest::prop_assert_eq!(b.iter().filter(|&&c| c == b'\n').count(), 1);
            proptest::prop_assert!(!b.contains(&0));
        }
    }
}
