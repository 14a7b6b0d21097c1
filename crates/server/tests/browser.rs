//! The web client in a real headless Chromium: `tests/browser/chat.test.mjs`
//! (Node, puppeteer-core driving Debian's chromium) against a server
//! started here. `scripts/test.sh` installs chromium, Node and the npm
//! packages when they are missing.

use std::path::PathBuf;
use std::process::Stdio;

use plaza_test_support::TestServer;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

#[tokio::test]
async fn two_browsers_and_a_tcp_user_chat_and_a_cut_browser_resumes() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/puppeteer-core").is_dir(),
        "npm packages missing: run scripts/test.sh (or `npm ci` in tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no browser at {chromium}: run scripts/test.sh (it installs Debian's chromium)"
    );
    // Rooms of three: the script fills one while a browser is away.
    let server = TestServer::with(|s| {
        s.ws_bind = Some("127.0.0.1:0".parse().unwrap());
        s.room_capacity = Some(3);
        // A dropped page's seat is held this long: the test waits for its
        // end (the room's leave notice) before filling the room.
        s.resume_window_secs = Some(2);
    })
    .await;
    let ws = server.running.ws_addr().expect("the WebSocket listener");
    let shots = tempfile::tempdir().unwrap();
    let mut node = tokio::process::Command::new("node");
    node.arg("chat.test.mjs")
        .current_dir(&dir)
        .env("PLAZA_WS", ws.to_string())
        .env("PLAZA_TCP", server.addr.to_string())
        .env("CHROMIUM", &chromium)
        .env("SHOTS", shots.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Generous: Chromium starts slowly on a busy machine; the script's own
    // waits are 20 s each.
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), node.output())
        .await
        .expect("the browser test finishes")
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("one browser resumed after a cut"), "{stdout}");
    // Screenshots stay out of the repository: they were taken, in a temp dir.
    assert!(shots.path().join("4-room-full-phone.png").exists());
}
