//! The per-key upstream budget's questions and answers: [`BudgetAsk`], [`Admit`] and the
//! [`Ticket`] that refunds an admission.

use std::sync::Arc;
use std::time::Duration;

/// One budget question: may one more request go upstream on `key`?
#[derive(Debug, Clone)]
pub struct BudgetAsk<'a> {
    /// The upstream key's name (all replicas name a key alike; never the secret).
    pub key: &'a str,
    /// Admissions allowed in any `window`.
    pub limit: u32,
    /// The window, including the margin against the upstream's own count.
    pub window: Duration,
    /// The user's fair share, checked in the same atomic step: (user name, limit per window).
    pub user: Option<(&'a str, u32)>,
}

/// What a budget question got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Counted; refund the ticket if the request never reaches upstream.
    Admitted(Ticket),
    /// The key's window is full: a slot frees after `wait`.
    KeyFull {
        /// Until the oldest admission leaves the window.
        wait: Duration,
    },
    /// The user's share is used up.
    UserFull {
        /// Until the user's oldest admission leaves the window.
        wait: Duration,
    },
    /// An upstream 429 paused the key.
    Paused {
        /// Until the pause ends.
        wait: Duration,
    },
}

/// An admission, so it can be refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The key it was counted on.
    pub key: Arc<str>,
    /// The user it was counted on, if a share applied.
    pub user: Option<Arc<str>>,
    /// Unique among the key's admissions; never 0 (see [`Ticket::uncounted`]).
    pub id: u64,
}

impl Ticket {
    /// A request let through on a key without a local budget: nothing was counted, so
    /// refunding it takes nothing back (no store issues id 0).
    pub fn uncounted(key: Arc<str>) -> Ticket {
        Ticket {
            key,
            user: None,
            id: 0,
        }
    }
}
