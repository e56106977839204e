//! Joins a Telegram conference call by its link with grammers, end-to-end encrypted by confchain.
//!
//! ```sh
//! TG_API_ID=... TG_API_HASH=... TG_PHONE=+... \
//!   cargo run -p confchain-grammers --example join --features client -- https://t.me/call/<slug>
//! ```
//!
//! What this example leaves to you, as a real application owns it:
//! * the media stack: `MEDIA_PARAMS` is a placeholder for the join JSON your WebRTC stack
//!   produces; the transport parameters Telegram answers with arrive as `Routed::Connection`;
//!   frames are encrypted with `session.call_mut()?.encrypt(..)`;
//! * showing the emojis (`VerificationDone`) for the members to compare aloud;
//! * the rejoin policy: this example stops when the session is removed, fails or leaves;
//! * a persistent login (this example keeps its grammers session in memory: it asks for a code
//!   at each run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confchain::session::{Session, SessionEvent, SessionState};
use confchain_grammers::{session_config, Conference, Invoke, Routed};
use grammers_client::{tl, Client, InvocationError, SenderPool};
use grammers_mtsender::UpdatesConfiguration;
use grammers_session::storages::MemorySession;
use rand_core::SeedableRng;
use tokio::io::AsyncBufReadExt;

const SSRC: i32 = 0x1234; // our audio source, as the media stack picked it
const MEDIA_PARAMS: &str =
    r#"{"ufrag":"<ice ufrag>","pwd":"<ice pwd>","fingerprints":[],"ssrc":4660,"ssrc-groups":[]}"#;

/// grammers' client is what sends the functions.
struct Telegram(Client);

impl Invoke for Telegram {
    fn invoke<R: tl::RemoteCall + Send + Sync>(
        &self,
        request: &R,
    ) -> impl std::future::Future<Output = Result<R::Return, InvocationError>> {
        self.0.invoke(request)
    }
}

fn done(state: SessionState) -> bool {
    matches!(state, SessionState::Removed | SessionState::Failed | SessionState::Left)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let link = std::env::args().nth(1).ok_or("usage: join https://t.me/call/<slug>")?;
    let slug = link.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
    let api_id: i32 = std::env::var("TG_API_ID")?.parse()?;
    let api_hash = std::env::var("TG_API_HASH")?;

    let storage = Arc::new(MemorySession::default());
    let SenderPool { runner, updates, handle } = SenderPool::new(Arc::clone(&storage), api_id);
    let client = Client::new(handle.clone());
    let pool = tokio::spawn(runner.run());
    if !client.is_authorized().await? {
        let token = client.request_login_code(&std::env::var("TG_PHONE")?, &api_hash).await?;
        println!("login code:");
        let mut code = String::new();
        tokio::io::BufReader::new(tokio::io::stdin()).read_line(&mut code).await?;
        client.sign_in(&token, code.trim()).await?;
    }
    let me = client.get_me().await?.id().bare_id().ok_or("no user id")?;
    let mut stream = client.stream_updates(updates, UpdatesConfiguration { catch_up: false }).await?;

    let telegram = Telegram(client.clone());
    let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
    // The call size limit of Telegram's app config (conference_call_size_limit), if it gives one.
    let mut session = Session::new(me, session_config(&telegram).await?)?;
    let call = tl::types::InputGroupCallSlug { slug }.into(); // the identity is learned from the join
    let mut conf = Conference::new(Some(call), MEDIA_PARAMS.to_owned(), 0);
    conf.source = SSRC;
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;

    session.join(now(), &mut rng)?;
    while !done(session.state()) {
        while let Some((id, request)) = session.poll_request() {
            let Some((response, other)) = conf.send(&telegram, &request).await else { break };
            for r in other {
                if let Routed::Connection { params, .. } = r {
                    println!("for the media stack: {params}");
                }
            }
            session.handle_response(id, response, now(), &mut rng);
        }
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::VerificationDone { emojis, .. } => {
                    println!("compare with the others: {}", emojis.join(" "))
                }
                other => println!("{other:?}"),
            }
        }
        let wait = session.poll_timeout().map_or(1000, |due| due.saturating_sub(now()).min(1000));
        tokio::select! {
            update = stream.next_raw() => {
                let (update, _, _) = update?;
                if let Routed::Session(u) = conf.route(update, false) {
                    session.handle_update(u, now(), &mut rng);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
        session.handle_timeout(now(), &mut rng);
    }
    handle.quit();
    let _ = pool.await;
    Ok(())
}
