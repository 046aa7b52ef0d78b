//! The controller listener: accepts peer connections (at most [`MAX_CONNECTIONS`] at once) and
//! answers one request frame at a time per connection. A malformed or oversized frame closes
//! that connection only. Dropping the accept task aborts every connection task it owns.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::node::Shared;
use super::wire::{self, Request, Response};

const MAX_CONNECTIONS: usize = 64;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays bounded.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(node = shared.id, error = %e, "controller listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(node = shared.id, %peer, "too many controller connections; closing the new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            connection(stream, &shared).await;
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, shared: &Shared) {
    loop {
        let req: Request = match wire::read_frame(&mut stream).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(node = shared.id, error = %e, "closing a controller connection");
                return;
            }
        };
        let resp = shared.handle(req).await;
        let frame = match wire::encode(&resp) {
            Ok(f) => f,
            Err(e) => match wire::encode(&Response::Rejected(e.to_string())) {
                Ok(f) => f,
                Err(_) => return,
            },
        };
        if wire::write_frame(&mut stream, &frame).await.is_err() {
            return;
        }
    }
}
