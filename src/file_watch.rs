//! Re-reading files when they change: the serving certificate and the policy
//! module. One watcher per file set; each change, and every poll period as a
//! fallback, runs the owner's reload, which compares contents itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

/// How long to wait after a file event before re-reading, so that files
/// written one after the other (a certificate and its key) are picked up together.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The distinct parent directories of the files, as given (not canonicalised:
/// the Kubernetes `..data` swap happens in the directory the configured path names).
pub fn parent_dirs<'a>(files: impl IntoIterator<Item = &'a Path>) -> Vec<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    files.into_iter().map(parent).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Whether a file event may mean new content. The owner's own reads open the
/// files, which inotify reports; those must not trigger another read.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches `dirs` and runs `reload` (off the async workers: it reads files) after
/// each change and every `poll`. Ends when `reload` returns false (its owner is gone).
pub async fn watch(
    what: &'static str,
    dirs: Vec<PathBuf>,
    poll: Duration,
    reload: impl Fn() -> bool + Send + Sync + 'static,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let signal = changed.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if is_change(&event.kind) => signal.notify_one(),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "file watch error"),
    });
    // Kept alive for the life of the loop; dropping it stops the watch.
    let _watcher = match watcher {
        Ok(mut watcher) => {
            for dir in &dirs {
                if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch the {what} directory; relying on polling every {poll:?}");
                }
            }
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(%error, "file watching unavailable; polling the {what} every {poll:?}");
            None
        }
    };

    let reload = Arc::new(reload);
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the files were just loaded
    loop {
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = ticker.tick() => {}
        }
        let reload = reload.clone();
        if !tokio::task::spawn_blocking(move || reload()).await.unwrap_or(true) {
            return;
        }
    }
}
