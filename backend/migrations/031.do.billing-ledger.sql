-- Monetisation (ours, issue 14): the admin's plan, an append-only double-entry ledger,
-- idempotent provider payments, statements per user and period, enforcement state, audit.
-- Amounts are numeric (exact decimals in the plan's currency), never floating point.

-- The one plan of the instance (the admin sets it over REST).
CREATE TABLE IF NOT EXISTS billing_plan (
    id smallint PRIMARY KEY CHECK (id = 1),
    currency varchar(10) NOT NULL CHECK (currency ~ '^[A-Z]{3,10}$'),
    -- Periods are [anchor + k * days, anchor + (k + 1) * days), UTC.
    period_anchor timestamp without time zone NOT NULL,
    billing_period_days integer NOT NULL CHECK (billing_period_days BETWEEN 1 AND 366),
    grace_period_days integer NOT NULL CHECK (grace_period_days BETWEEN 0 AND 366),
    free_mps numeric(20, 9) NOT NULL CHECK (free_mps >= 0),
    mps_price numeric(38, 9) NOT NULL CHECK (mps_price >= 0),
    free_aggregation_topics numeric(20, 9) NOT NULL CHECK (free_aggregation_topics >= 0),
    aggregation_topic_price numeric(38, 9) NOT NULL CHECK (aggregation_topic_price >= 0),
    -- Telegram Stars per currency unit (1 when the currency is XTR).
    stars_per_unit numeric(20, 9) NOT NULL CHECK (stars_per_unit > 0),
    update_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    updater_uuid uuid
);

-- One row per business event; its entries balance (sum to zero, checked at commit).
CREATE TABLE IF NOT EXISTS billing_transactions (
    uuid uuid PRIMARY KEY,
    kind varchar(16) NOT NULL CHECK (kind IN ('payment', 'charge', 'refund', 'adjustment')),
    user_uuid uuid NOT NULL,
    -- Makes every posting idempotent: `payment:<provider>:<external id>`, `charge:<user>:<period>`, ...
    idempotency_key varchar(300) NOT NULL UNIQUE,
    description text NOT NULL,
    actor_uuid uuid,  -- the admin behind refunds and adjustments
    create_datetime timestamp without time zone NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'utc')
);
CREATE INDEX IF NOT EXISTS idx_billing_transactions_user ON billing_transactions (user_uuid, create_datetime);

-- Debits are positive, credits negative. Accounts: `customer` (with user_uuid: what the
-- instance owes the user, i.e. the balance is minus the sum), `provider:<name>` (money received
-- through a provider), `revenue` (usage charged), `adjustments` (manual corrections).
CREATE TABLE IF NOT EXISTS billing_entries (
    id bigserial PRIMARY KEY,
    transaction_uuid uuid NOT NULL,
    account varchar(40) NOT NULL,
    user_uuid uuid,
    amount numeric(38, 9) NOT NULL CHECK (amount <> 0),
    CHECK ((account = 'customer') = (user_uuid IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_billing_entries_transaction ON billing_entries (transaction_uuid);
CREATE INDEX IF NOT EXISTS idx_billing_entries_customer ON billing_entries (user_uuid) WHERE account = 'customer';

-- Orders (invoices we asked a provider for) and the payments providers reported.
CREATE TABLE IF NOT EXISTS billing_orders (
    uuid uuid PRIMARY KEY,
    user_uuid uuid NOT NULL,
    provider varchar(32) NOT NULL,
    amount numeric(38, 9) NOT NULL CHECK (amount > 0), -- in the plan currency
    currency varchar(10) NOT NULL,
    provider_amount text NOT NULL,                      -- what the provider was asked for (its unit)
    provider_invoice_id varchar(200),
    pay_url text,
    status varchar(16) NOT NULL CHECK (status IN ('open', 'paid', 'expired', 'review')),
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);
CREATE INDEX IF NOT EXISTS idx_billing_orders_user ON billing_orders (user_uuid, create_datetime DESC);

CREATE TABLE IF NOT EXISTS billing_payments (
    provider varchar(32) NOT NULL,
    external_id varchar(200) NOT NULL,
    order_uuid uuid,
    user_uuid uuid NOT NULL,
    status varchar(16) NOT NULL CHECK (status IN ('credited', 'review', 'refunded')),
    asset varchar(20) NOT NULL,
    amount_text text NOT NULL,
    transaction_uuid uuid,
    raw jsonb NOT NULL,
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (provider, external_id)
);

-- Itemised statements: one per user and period, frozen once issued.
CREATE TABLE IF NOT EXISTS billing_statements (
    user_uuid uuid NOT NULL,
    period_start timestamp without time zone NOT NULL,
    period_end timestamp without time zone NOT NULL,
    body text NOT NULL,            -- JSON of the statement as issued
    total numeric(38, 9) NOT NULL,
    transaction_uuid uuid,
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    PRIMARY KEY (user_uuid, period_start)
);

-- Enforcement: since when a user owes money, and when they were limited and warned.
CREATE TABLE IF NOT EXISTS billing_user_state (
    user_uuid uuid PRIMARY KEY,
    arrears_since timestamp without time zone,
    limited_since timestamp without time zone,
    last_warning_datetime timestamp without time zone
);

-- Every change by a person or a provider, in order.
CREATE TABLE IF NOT EXISTS billing_audit (
    id bigserial PRIMARY KEY,
    actor varchar(80) NOT NULL,   -- `user:<uuid>`, `admin:<uuid>`, `provider:<name>`, `system`
    action varchar(60) NOT NULL,
    detail jsonb NOT NULL,
    create_datetime timestamp without time zone NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'utc')
);

-- Append-only: the ledger and the audit never change or lose rows.
CREATE OR REPLACE FUNCTION billing_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billing: % is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER billing_transactions_append_only BEFORE UPDATE OR DELETE ON billing_transactions FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_entries_append_only BEFORE UPDATE OR DELETE ON billing_entries FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_audit_append_only BEFORE UPDATE OR DELETE ON billing_audit FOR EACH ROW EXECUTE FUNCTION billing_append_only();

-- Double entry: the entries of a transaction sum to zero, checked when the transaction commits.
CREATE OR REPLACE FUNCTION billing_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total FROM billing_entries WHERE transaction_uuid = NEW.transaction_uuid;
    IF total <> 0 THEN
        RAISE EXCEPTION 'billing: transaction % does not balance (%)', NEW.transaction_uuid, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER billing_entries_balanced AFTER INSERT ON billing_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_entries_balanced();
