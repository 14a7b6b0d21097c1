//! Flags over the file over defaults, and what each setting resolves to.

use super::*;

#[test]
fn flags_win_over_the_file_and_defaults_fill_the_rest() {
    let file: Settings = toml::from_str("rooms = 5\nroom-capacity = 7\nbind = \"127.0.0.1:9000\"").unwrap();
    let cli = Settings {
        rooms: Some(3),
        ..Settings::default()
    };
    let r = cli.or(file).resolve().unwrap();
    assert_eq!(r.chat.rooms, 3);
    assert_eq!(r.chat.room_capacity, 7);
    assert_eq!(r.bind, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(r.chat.max_users, 10_000);
    assert!(toml::from_str::<Settings>("no-such-key = 1").is_err());
}

#[test]
fn writes_are_gathered_every_2_ms_unless_set_to_0() {
    let gather = |s: Settings| s.resolve().unwrap().gather;
    assert_eq!(gather(Settings::default()), Some(Duration::from_millis(2)));
    assert_eq!(
        gather(toml::from_str("gather-ms = 5").unwrap()),
        Some(Duration::from_millis(5))
    );
    assert_eq!(gather(toml::from_str("gather-ms = 0").unwrap()), None);
}

#[test]
fn websocket_settings_are_checked() {
    let ws = |toml_text: &str| toml::from_str::<Settings>(toml_text).unwrap().resolve();
    assert!(ws("").unwrap().ws.is_none(), "off by default");
    let on = ws("ws-bind = \"127.0.0.1:7780\"\nws-allowed-origins = [\"https://a.example\"]").unwrap();
    let on = on.ws.unwrap();
    assert_eq!(on.bind, "127.0.0.1:7780".parse().unwrap());
    assert_eq!(on.allowed_origins, ["https://a.example"]);
    assert!(
        ws("wss-bind = \"127.0.0.1:7781\"").is_err(),
        "wss needs ws beside it"
    );
    let no_cert = ws("ws-bind = \"127.0.0.1:7780\"\nwss-bind = \"127.0.0.1:7781\"");
    assert!(no_cert.is_err(), "wss needs a certificate");
}

#[test]
fn irc_settings_are_checked() {
    let irc = |toml_text: &str| toml::from_str::<Settings>(toml_text).unwrap().resolve();
    assert!(irc("").unwrap().irc.is_none(), "off by default");
    let on = irc("irc-bind = \"127.0.0.1:6667\"").unwrap().irc.unwrap();
    assert_eq!(on.bind, "127.0.0.1:6667".parse().unwrap());
    assert!(!on.allow_guests, "guests are off by default");
    assert_eq!(on.server_name, "plaza");
    let named =
        irc("irc-bind = \"127.0.0.1:6667\"\nallow-guests = true\nirc-server-name = \"irc.example.com\"");
    let named = named.unwrap().irc.unwrap();
    assert!(named.allow_guests);
    assert_eq!(named.server_name, "irc.example.com");
    assert!(
        irc("irc-tls-bind = \"127.0.0.1:6697\"").is_err(),
        "TLS needs the plain listener beside it"
    );
    assert!(
        irc("irc-bind = \"127.0.0.1:6667\"\nirc-tls-bind = \"127.0.0.1:6697\"").is_err(),
        "TLS needs a certificate"
    );
    assert!(
        irc("irc-bind = \"127.0.0.1:6667\"\nirc-server-name = \"a b\"").is_err(),
        "a server name is a host name"
    );
}
