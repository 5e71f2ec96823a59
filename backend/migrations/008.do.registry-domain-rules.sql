-- Which repository hosts users may register (ours, issue 10): the admin's allow and deny rules.
-- A rule's domain matches itself and its subdomains; deny wins; when any allow rule exists, only
-- allowed hosts may be registered. Allowed hosts may also resolve to private addresses (an
-- on-premises git server); every other host must resolve to public addresses only.
CREATE TABLE IF NOT EXISTS repository_domain_rules (
    domain varchar(253) PRIMARY KEY,
    rule varchar(5) NOT NULL CHECK (rule IN ('allow', 'deny')),
    creator_uuid uuid, -- the admin who set it (kept when the account is deleted: an audit trail)
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
