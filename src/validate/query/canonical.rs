//! A validated list query in its canonical form ([`ListQuery`]): the cache key, and the
//! query (with the forced `userId`) sent upstream.

/// A validated list query in canonical form. Equality/Hash mean "upstream must answer
/// identically" for the same user: they cover the normalized parameters only. The
/// client-supplied `userId` is left out because it never reaches upstream (the gateway sends
/// the mapped one, after policy has refused any other), so a cache keyed on this value plus
/// the mapped identity shares entries between `?userId=<own>&x` and `?x`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Normalized parameters, ordered by name; never contains `userId`.
    pub(super) params: Vec<(std::borrow::Cow<'static, str>, String)>,
    /// `params` encoded.
    pub(super) canonical: String,
    pub(super) client_user_id: Option<u64>,
}

impl PartialEq for ListQuery {
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
    }
}

impl Eq for ListQuery {}

impl std::hash::Hash for ListQuery {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.params.hash(state);
    }
}

impl ListQuery {
    /// The client-supplied userId, if any (the gateway compares it with the mapped identity).
    pub fn client_user_id(&self) -> Option<u64> {
        self.client_user_id
    }

    /// The canonical query WITHOUT userId: parameters ordered by name, percent-encoded
    /// (form_urlencoded::Serializer), e.g. `search=Tech&stages=1%2C2&view=all`. Empty string
    /// when there are no parameters.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The query string to send upstream: the canonical parameters plus `userId=<user_id>`,
    /// all ordered by name.
    pub fn upstream_query(&self, user_id: u64) -> String {
        let mut digits = [0u8; 20];
        let user = format_u64(user_id, &mut digits);
        let mut s = String::with_capacity(self.query_len(Some(user)));
        self.push_query(&mut s, Some(user));
        s
    }

    /// The path and query forwarded upstream for a read of `path` (which the router matched
    /// exactly): the canonical parameters plus the forced `userId` where the route takes one,
    /// all ordered by name. The cache keys on exactly this, so what is cached is what
    /// upstream was asked.
    pub fn target(&self, path: &str, user_id: Option<u64>) -> http::uri::PathAndQuery {
        let mut digits = [0u8; 20];
        let user = user_id.map(|id| format_u64(id, &mut digits));
        // Assembled in a buffer of its exact size, which `Bytes` then takes over without a
        // second allocation.
        let query_len = self.query_len(user);
        let mut s = String::with_capacity(path.len() + usize::from(query_len > 0) + query_len);
        s.push_str(path);
        if query_len > 0 {
            s.push('?');
        }
        self.push_query(&mut s, user);
        debug_assert_eq!(s.len(), s.capacity());
        // A matched path and an encoded query: always a valid request target.
        http::uri::PathAndQuery::try_from(s).expect("a matched path and an encoded query")
    }

    /// The length of the query [`Self::push_query`] writes.
    fn query_len(&self, user: Option<&str>) -> usize {
        let extra = user.map_or(0, |u| "userId=".len() + u.len() + 1);
        (self.canonical.len() + extra)
            .saturating_sub(usize::from(self.canonical.is_empty() && user.is_some()))
    }

    /// Appends the canonical parameters with `userId=<user>` (if any) in its place by name.
    /// The canonical form is already encoded, and `userId=<digits>` needs no encoding;
    /// segments split on `&` are whole parameters (an `&` inside a value is encoded).
    fn push_query(&self, s: &mut String, user: Option<&str>) {
        let mut first = true;
        let mut push = |s: &mut String, segment: &str| {
            if !first {
                s.push('&');
            }
            first = false;
            s.push_str(segment);
        };
        let mut pending = user;
        for segment in self.canonical.split('&').filter(|seg| !seg.is_empty()) {
            let name = segment.split_once('=').map_or(segment, |(k, _)| k);
            if let Some(u) = pending.filter(|_| name > "userId") {
                push(s, "userId=");
                s.push_str(u);
                pending = None;
            }
            push(s, segment);
        }
        if let Some(u) = pending {
            push(s, "userId=");
            s.push_str(u);
        }
    }
}

/// `n` in decimal, without allocating.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}
