//! The documented query of each read route ([`QuerySpec`]: its parameters and what each
//! holds, [`Kind`]): a table of data the route table points into.

/// What a documented parameter holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The caller's JourneyBee user id: checked against the mapped one, never forwarded as given.
    UserId,
    /// A non-empty opaque string (`cursor`).
    Opaque,
    /// Free text, bounded (`search`).
    Search,
    /// One of the listed values.
    Enum(&'static [&'static str]),
    /// A comma-separated set of the listed values (sorted, de-duplicated).
    EnumSet(&'static [&'static str]),
    /// A set of positive integer ids.
    Ids,
    /// One positive integer id.
    Id,
    /// Present with the value `1`.
    Flag,
    /// Any value, kept as given (`indirect`: "any value").
    Any,
    /// The JSON custom-field filter list.
    CustomFields,
    /// The JSON sort list, with the sort types the route accepts.
    Sort(&'static [&'static str]),
}

/// The documented query of one route.
#[derive(Debug, Clone, Copy)]
pub struct QuerySpec {
    /// The documented parameters (exact, case-sensitive names).
    pub params: &'static [(&'static str, Kind)],
    /// Whether the route's query is only partly documented: undocumented parameters are then
    /// forwarded as given instead of refused.
    pub open: bool,
}

impl QuerySpec {
    /// Whether the route takes a `userId` (forced to the caller's mapped id).
    pub fn takes_user_id(&self) -> bool {
        self.params.iter().any(|(_, k)| matches!(k, Kind::UserId))
    }
}

/// `GET /api/v1/partnerships`.
pub const PARTNERSHIPS: QuerySpec = QuerySpec {
    params: &[
        ("userId", Kind::UserId),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        (
            "view",
            Kind::Enum(&["all", "assigned", "referral", "reseller"]),
        ),
        ("stages", Kind::Ids),
        ("tags", Kind::Ids),
        ("categories", Kind::Ids),
        ("tiers", Kind::Ids),
        ("users", Kind::Ids),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        ("customFields", Kind::CustomFields),
        ("sort", Kind::Sort(&["stage", "category", "tier"])),
    ],
    open: false,
};

/// `GET /api/v1/leads`.
pub const LEADS: QuerySpec = QuerySpec {
    params: &[
        ("userId", Kind::UserId),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        (
            "view",
            Kind::Enum(&["received", "sent", "reseller", "campaigns"]),
        ),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        (
            "status",
            Kind::EnumSet(&["new", "contacted", "qualified", "converted", "lost"]),
        ),
        ("tags", Kind::Ids),
        ("users", Kind::Ids),
        ("customFields", Kind::CustomFields),
        ("sort", Kind::Sort(&["status"])),
    ],
    open: false,
};

/// `GET /api/v1/lead-deals`: only partly documented, so other parameters are forwarded.
pub const LEAD_DEALS: QuerySpec = QuerySpec {
    params: &[
        ("view", Kind::Opaque),
        ("cursor", Kind::Opaque),
        ("search", Kind::Search),
        ("assigned", Kind::Flag),
        ("unassigned", Kind::Flag),
        ("showPartnersStages", Kind::Any),
        ("stages", Kind::Ids),
        ("phases", Kind::Any),
        ("tags", Kind::Ids),
    ],
    open: true,
};

/// `GET /api/v1/users`.
pub const USERS: QuerySpec = QuerySpec {
    params: &[("indirect", Kind::Any)],
    open: false,
};

/// `GET /api/v1/tags`.
pub const TAGS: QuerySpec = QuerySpec {
    params: &[
        (
            "association",
            Kind::Enum(&["lead", "lead_deal", "partner", "card"]),
        ),
        ("partner_type", Kind::Enum(&["referral", "reseller"])),
    ],
    open: false,
};

/// `GET /api/v1/custom-fields`.
pub const CUSTOM_FIELDS: QuerySpec = QuerySpec {
    params: &[
        ("category", Kind::Enum(&["lead", "lead_deal", "partner"])),
        ("partner_type", Kind::Enum(&["referral", "reseller"])),
    ],
    open: false,
};

/// `GET /api/v1/contacts`.
pub const CONTACTS: QuerySpec = QuerySpec {
    params: &[("partnership_id", Kind::Id)],
    open: false,
};

/// A route with no documented query parameter.
pub const NONE: QuerySpec = QuerySpec {
    params: &[],
    open: false,
};
