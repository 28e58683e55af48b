//! A [`ControllerHandle`] over a quorum member, so the node-facing TCP server
//! ([`crate::remote::serve_until`]) serves a Raft member exactly as it serves
//! the single-process controller.
//!
//! ```text
//!  serve_until ──submit──▶ flume (bounded) ──▶ "weir-raft-submit" thread ──▶ RaftController::submit
//!       ▲                                                                       (leader: plan, replicate;
//!       │ subscribe/image                                                        follower: not_active)
//!       └──────────── Hub of the member's state machine (applied image, deltas)
//! ```
//!
//! Submits run one at a time, as in the single-process controller (the
//! member serializes its writes anyway). A follower answers every submit
//! with [`ControllerError::not_active`], naming the leader; subscriptions are
//! served by every member from its applied image.

use std::sync::Arc;

use super::RaftController;
use crate::error::ControllerError;
use crate::handle::{ControllerHandle, ControllerJoin, ControllerOptions, Msg, Request};

/// Starts the submit thread of `member` and returns a handle over it. The
/// thread holds `member` until [`ControllerJoin::shutdown`]; it ends by
/// itself only on a fatal error, which it returns.
pub fn start_handle(
    member: Arc<RaftController>,
    options: &ControllerOptions,
) -> anyhow::Result<(ControllerHandle, ControllerJoin)> {
    let (tx, rx) = flume::bounded::<Msg>(options.request_queue_len);
    let hub = member.hub();
    let thread = std::thread::Builder::new().name("weir-raft-submit".into()).spawn(move || {
        for msg in rx.iter() {
            let Msg::Submit(Request { cmd, reply }) = msg else { break };
            match member.submit_blocking(cmd) {
                // Committed and applied here: the hub is at least at its version.
                Ok(result) => {
                    let _ = reply.send(Ok((result, member.hub().version())));
                }
                Err(e) if e.is_fatal() => {
                    let _ = reply.send(Err(e.clone()));
                    return Err(e);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        Ok::<(), ControllerError>(())
    })?;
    Ok((
        ControllerHandle { tx: tx.clone(), hub, in_process: false },
        ControllerJoin::new(tx, thread),
    ))
}
