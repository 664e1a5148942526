-- Diamond Opus schema: the whole design (ingestion, consolidation, serving, local bus, operations).
-- Money is numeric (dollars with cents); every state column has a CHECK; every child row has a foreign key.

-- Feed variants. Everything that belongs to a feed references this table, so a misspelt feed
-- cannot be written anywhere.
CREATE TABLE feeds (
    feed        text PRIMARY KEY,
    supplier    text NOT NULL,
    labgrown    boolean NOT NULL,
    description text NOT NULL
);
INSERT INTO feeds (feed, supplier, labgrown, description) VALUES
    ('nivoda-natural',  'nivoda', false, 'Nivoda natural stones (labgrown: false)'),
    ('nivoda-labgrown', 'nivoda', true,  'Nivoda lab-grown stones (labgrown: true)');

-- ------------------------------------------------------------------------------------------
-- Runs and partitions
-- ------------------------------------------------------------------------------------------
CREATE TABLE run_metadata (
    run_id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    feed                       text NOT NULL REFERENCES feeds,
    run_type                   text NOT NULL CHECK (run_type IN ('full', 'incremental')),
    status                     text NOT NULL DEFAULT 'planned' CHECK (status IN
                                   ('planned', 'ingesting', 'consolidating', 'completed', 'skipped', 'failed', 'cancelled')),
    status_reason              text,
    trace_id                   text NOT NULL,
    -- The feed window, fixed when the run is planned; updated_to becomes the watermark on success.
    updated_from               timestamptz NOT NULL,
    updated_to                 timestamptz NOT NULL,
    watermark_before           timestamptz,
    expected_partitions        integer NOT NULL CHECK (expected_partitions > 0),
    estimated_records          bigint NOT NULL CHECK (estimated_records >= 0),
    heatmap                    jsonb NOT NULL DEFAULT '{}'::jsonb,
    requested_by               text NOT NULL DEFAULT 'schedule',
    -- Consolidation
    forced                     boolean NOT NULL DEFAULT false,
    consolidation_requested_at timestamptz,
    consolidation_started_at   timestamptz,
    consolidation_completed_at timestamptz,
    pricing_version            bigint,
    consolidation_processed    bigint NOT NULL DEFAULT 0 CHECK (consolidation_processed >= 0),
    consolidation_errors       bigint NOT NULL DEFAULT 0 CHECK (consolidation_errors >= 0),
    diamonds_inserted          bigint NOT NULL DEFAULT 0,
    diamonds_updated           bigint NOT NULL DEFAULT 0,
    diamonds_unchanged         bigint NOT NULL DEFAULT 0,
    diamonds_deleted           bigint NOT NULL DEFAULT 0,
    diamonds_restored          bigint NOT NULL DEFAULT 0,
    watermark_advanced         boolean NOT NULL DEFAULT false,
    -- Timeline
    started_at                 timestamptz NOT NULL DEFAULT now(),
    ingestion_completed_at     timestamptz,
    completed_at               timestamptz,
    last_progress_at           timestamptz NOT NULL DEFAULT now(),
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CHECK (updated_from < updated_to),
    CHECK ((status IN ('completed', 'skipped', 'failed', 'cancelled')) = (completed_at IS NOT NULL)),
    CHECK (NOT watermark_advanced OR (status = 'completed' AND NOT forced))
);
-- One active run per feed: a second start is refused by the database itself.
CREATE UNIQUE INDEX run_metadata_one_active_per_feed
    ON run_metadata (feed) WHERE status IN ('planned', 'ingesting', 'consolidating');
CREATE INDEX run_metadata_feed_started ON run_metadata (feed, started_at DESC);
CREATE INDEX run_metadata_started ON run_metadata (started_at DESC);

CREATE TABLE partition_progress (
    run_id            uuid NOT NULL REFERENCES run_metadata ON DELETE CASCADE,
    partition_id      text NOT NULL,
    position          integer NOT NULL CHECK (position >= 0),
    -- Inclusive price-per-carat bounds in dollars; the last partition is open-ended (NULL max).
    min_price         numeric(12, 2) NOT NULL CHECK (min_price >= 0),
    max_price         numeric(12, 2),
    estimated_records integer NOT NULL CHECK (estimated_records >= 0),
    status            text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    next_offset       integer NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    -- Offset of the page that last advanced this partition: when that message is redelivered
    -- (its sender crashed before completing it) the follow-up message is sent again.
    last_page_offset  integer CHECK (last_page_offset >= 0),
    -- Last stone of the previous page: pages overlap by one so that drift (stones leaving the
    -- window ahead of the cursor) is detected instead of silently skipping stones.
    anchor_id         text,
    pages             integer NOT NULL DEFAULT 0 CHECK (pages >= 0),
    records_seen      integer NOT NULL DEFAULT 0 CHECK (records_seen >= 0),
    records_changed   integer NOT NULL DEFAULT 0 CHECK (records_changed >= 0),
    drift_recoveries  integer NOT NULL DEFAULT 0 CHECK (drift_recoveries >= 0),
    attempts          integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    error             text,
    started_at        timestamptz,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, partition_id),
    UNIQUE (run_id, position),
    CHECK (max_price IS NULL OR min_price <= max_price),
    CHECK ((status = 'failed') = (error IS NOT NULL)),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL))
);
CREATE INDEX partition_progress_open ON partition_progress (run_id) WHERE status IN ('pending', 'running');

-- One row per attempt at a partition (a retry adds a row), for the operators' timeline.
CREATE TABLE worker_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            uuid NOT NULL,
    partition_id      text NOT NULL,
    attempt           integer NOT NULL CHECK (attempt >= 1),
    worker_id         text NOT NULL,
    status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    records_processed integer NOT NULL DEFAULT 0 CHECK (records_processed >= 0),
    error_message     text,
    work_item_payload jsonb NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    FOREIGN KEY (run_id, partition_id) REFERENCES partition_progress ON DELETE CASCADE,
    UNIQUE (run_id, partition_id, attempt),
    CHECK ((status = 'failed') = (error_message IS NOT NULL))
);

-- ------------------------------------------------------------------------------------------
-- Raw feed data
-- ------------------------------------------------------------------------------------------
CREATE TABLE raw_diamonds_nivoda (
    feed              text NOT NULL REFERENCES feeds,
    supplier_stone_id text NOT NULL,
    offer_id          text NOT NULL,
    payload           jsonb NOT NULL,
    payload_hash      bytea NOT NULL,
    -- The last run whose page changed this row.
    run_id            uuid NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, supplier_stone_id)
);

-- Raw rows waiting for consolidation. Kept apart from the 2 KB payload rows so that claiming and
-- finishing work never rewrites a payload (a DELETE of a narrow row instead of an UPDATE of a wide one).
CREATE TABLE raw_pending (
    feed              text NOT NULL REFERENCES feeds,
    supplier_stone_id text NOT NULL,
    run_id            uuid NOT NULL,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, supplier_stone_id),
    FOREIGN KEY (feed, supplier_stone_id) REFERENCES raw_diamonds_nivoda ON DELETE CASCADE
);
CREATE INDEX raw_pending_run ON raw_pending (run_id);

-- Every stone a run's pages returned, whether or not it changed: the set a full run's soft
-- delete trusts ("not seen" = candidate for deletion).
CREATE TABLE run_seen_stones (
    run_id            uuid NOT NULL REFERENCES run_metadata ON DELETE CASCADE,
    supplier_stone_id text NOT NULL,
    PRIMARY KEY (run_id, supplier_stone_id)
);

-- ------------------------------------------------------------------------------------------
-- Catalogue
-- ------------------------------------------------------------------------------------------
CREATE TABLE diamonds (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    feed                  text NOT NULL REFERENCES feeds,
    supplier_stone_id     text NOT NULL,
    offer_id              text NOT NULL,
    -- Grading (normalised by the mapper: upper-case codes, fancy values in Title Case)
    shape                 text NOT NULL,
    carats                numeric(6, 2) NOT NULL CHECK (carats > 0),
    color                 text,
    clarity               text,
    cut                   text,
    polish                text,
    symmetry              text,
    fluorescence          text,
    fluorescence_intensity text,
    fancy_color           text,
    fancy_intensity       text,
    fancy_overtone        text,
    lab_grown             boolean NOT NULL,
    treated               boolean NOT NULL DEFAULT false,
    -- Money, in dollars
    feed_price            numeric(12, 2) NOT NULL CHECK (feed_price >= 0),
    diamond_price         numeric(12, 2) CHECK (diamond_price >= 0),
    price_per_carat       numeric(12, 2) NOT NULL CHECK (price_per_carat >= 0),
    retail_price          numeric(12, 2) NOT NULL CHECK (retail_price >= 0),
    markup_ratio          numeric(8, 4) NOT NULL CHECK (markup_ratio > 0),
    pricing_rule_id       bigint,
    rating                smallint CHECK (rating BETWEEN 1 AND 10),
    -- Availability
    availability          text NOT NULL CHECK (availability IN ('available', 'on_hold', 'sold', 'unavailable')),
    raw_availability      text,
    hold_id               text,
    -- Media and certificate
    image_url             text,
    video_url             text,
    meta_images           jsonb,
    certificate_lab       text,
    certificate_number    text,
    certificate_pdf_url   text,
    -- Measurements and proportions
    ratio                 numeric(6, 3),
    table_pct             numeric(5, 2),
    depth_pct             numeric(5, 2),
    length_mm             numeric(6, 2),
    width_mm              numeric(6, 2),
    depth_mm              numeric(6, 2),
    crown_angle           numeric(5, 2),
    crown_height          numeric(5, 2),
    pavilion_angle        numeric(5, 2),
    pavilion_depth        numeric(5, 2),
    girdle                text,
    culet_size            text,
    eye_clean             boolean,
    brown                 text,
    green                 text,
    milky                 text,
    supplier_name         text,
    supplier_legal_name   text,
    -- Lifecycle
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    deleted_at            timestamptz,
    -- Hash of every mapped and priced column: equal hash = nothing to rewrite.
    row_hash              bytea NOT NULL,
    last_run_id           uuid,
    source_updated_at     timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (feed, supplier_stone_id),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
-- Search indexes are designed for the API's query shapes: every one is partial on live,
-- available stones (the default filter) and ends in id for keyset paging.
CREATE INDEX diamonds_browse_price ON diamonds (retail_price, id) WHERE status = 'active';
CREATE INDEX diamonds_browse_carats ON diamonds (carats, id) WHERE status = 'active';
CREATE INDEX diamonds_browse_created ON diamonds (created_at, id) WHERE status = 'active';
CREATE INDEX diamonds_shape_price ON diamonds (shape, lab_grown, retail_price, id) WHERE status = 'active';
CREATE INDEX diamonds_shape_carats ON diamonds (shape, lab_grown, carats, id) WHERE status = 'active';
CREATE INDEX diamonds_feed_status ON diamonds (feed, status);
CREATE INDEX diamonds_offer ON diamonds (offer_id);

-- Price and availability changes, appended by consolidation and repricing.
CREATE TABLE diamond_history (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    diamond_id        uuid NOT NULL REFERENCES diamonds ON DELETE CASCADE,
    run_id            uuid,
    repricing_job_id  bigint,
    change            text NOT NULL CHECK (change IN ('created', 'price', 'availability', 'deleted', 'restored', 'repriced')),
    old_availability  text,
    new_availability  text,
    old_feed_price    numeric(12, 2),
    new_feed_price    numeric(12, 2),
    old_retail_price  numeric(12, 2),
    new_retail_price  numeric(12, 2),
    changed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX diamond_history_diamond ON diamond_history (diamond_id, changed_at DESC);
CREATE INDEX diamond_history_run ON diamond_history (run_id) WHERE run_id IS NOT NULL;

-- Bumped at every consolidation and repricing; the API's ETag is built from it.
CREATE TABLE dataset_versions (
    feed       text PRIMARY KEY REFERENCES feeds,
    version    bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO dataset_versions (feed) SELECT feed FROM feeds;

-- ------------------------------------------------------------------------------------------
-- Pricing
-- ------------------------------------------------------------------------------------------
CREATE TABLE pricing_base_margins (
    stone_type text PRIMARY KEY CHECK (stone_type IN ('natural', 'lab', 'fancy')),
    margin_pct numeric(6, 2) NOT NULL CHECK (margin_pct > -100)
);
INSERT INTO pricing_base_margins VALUES ('natural', 40), ('lab', 79), ('fancy', 40);

CREATE TABLE pricing_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    priority        integer NOT NULL CHECK (priority >= 0),
    description     text,
    -- Criteria: NULL means "any".
    feed            text REFERENCES feeds,
    stone_type      text CHECK (stone_type IN ('natural', 'lab', 'fancy')),
    shapes          text[] CHECK (cardinality(shapes) > 0),
    colors          text[] CHECK (cardinality(colors) > 0),
    clarities       text[] CHECK (cardinality(clarities) > 0),
    cuts            text[] CHECK (cardinality(cuts) > 0),
    carat_min       numeric(6, 2) CHECK (carat_min >= 0),
    carat_max       numeric(6, 2),
    cost_min        numeric(12, 2) CHECK (cost_min >= 0),
    cost_max        numeric(12, 2),
    -- Outcome: exactly one of a multiplier or a margin modifier (percentage points over the base margin).
    markup_multiplier numeric(8, 4) CHECK (markup_multiplier > 0),
    margin_modifier   numeric(6, 2),
    rating          smallint CHECK (rating BETWEEN 1 AND 10),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (carat_min IS NULL OR carat_max IS NULL OR carat_min <= carat_max),
    CHECK (cost_min IS NULL OR cost_max IS NULL OR cost_min <= cost_max),
    CHECK ((markup_multiplier IS NULL) <> (margin_modifier IS NULL))
);
CREATE UNIQUE INDEX pricing_rules_priority_per_feed
    ON pricing_rules (coalesce(feed, ''), priority) WHERE active;

-- Every change to the rule set is a new version holding a snapshot of the active rules and base
-- margins; a consolidation loads one version and records it on the run.
CREATE TABLE pricing_rule_versions (
    version    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    snapshot   jsonb NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repricing_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status        text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'reverted')),
    from_version  bigint REFERENCES pricing_rule_versions,
    to_version    bigint NOT NULL REFERENCES pricing_rule_versions,
    reason        text NOT NULL,
    total         bigint NOT NULL DEFAULT 0,
    processed     bigint NOT NULL DEFAULT 0,
    changed       bigint NOT NULL DEFAULT 0,
    price_delta   numeric(16, 2) NOT NULL DEFAULT 0,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    reverted_at   timestamptz,
    last_progress_at timestamptz
);
CREATE UNIQUE INDEX repricing_jobs_one_running ON repricing_jobs ((true)) WHERE status IN ('pending', 'running');

CREATE TABLE repricing_snapshots (
    job_id            bigint NOT NULL REFERENCES repricing_jobs ON DELETE CASCADE,
    diamond_id        uuid NOT NULL REFERENCES diamonds ON DELETE CASCADE,
    old_retail_price  numeric(12, 2) NOT NULL,
    old_markup_ratio  numeric(8, 4) NOT NULL,
    old_rating        smallint,
    old_pricing_rule_id bigint,
    new_retail_price  numeric(12, 2) NOT NULL,
    new_markup_ratio  numeric(8, 4) NOT NULL,
    new_rating        smallint,
    new_pricing_rule_id bigint,
    PRIMARY KEY (job_id, diamond_id)
);

-- ------------------------------------------------------------------------------------------
-- Watermarks
-- ------------------------------------------------------------------------------------------
CREATE TABLE watermarks (
    feed            text PRIMARY KEY REFERENCES feeds,
    last_updated_at timestamptz NOT NULL,
    last_run_id     uuid REFERENCES run_metadata ON DELETE SET NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- ------------------------------------------------------------------------------------------
-- Local message bus (Service Bus semantics on PostgreSQL) and dead letters
-- ------------------------------------------------------------------------------------------
CREATE TABLE bus_messages (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue                  text NOT NULL CHECK (queue <> ''),
    message_id             text NOT NULL CHECK (message_id <> ''),
    body                   jsonb NOT NULL,
    application_properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    correlation_id         text,
    enqueued_at            timestamptz NOT NULL DEFAULT now(),
    -- Not deliverable before this moment: scheduled enqueue, or lock expiry after a receive.
    visible_at             timestamptz NOT NULL DEFAULT now(),
    delivery_count         integer NOT NULL DEFAULT 0 CHECK (delivery_count >= 0),
    lock_token             uuid,
    locked_until           timestamptz,
    CHECK ((lock_token IS NULL) = (locked_until IS NULL))
);
CREATE INDEX bus_messages_ready ON bus_messages (queue, visible_at, id);

-- Duplicate detection: a message id sent within the window is dropped, even if already consumed.
CREATE TABLE bus_message_ids (
    queue      text NOT NULL,
    message_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, message_id)
);
CREATE INDEX bus_message_ids_expiry ON bus_message_ids (expires_at);

-- Dead letters from the local bus AND from Azure Service Bus dead-letter sub-queues.
CREATE TABLE dead_letters (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source                 text NOT NULL CHECK (source IN ('local', 'servicebus', 'poison')),
    queue                  text NOT NULL,
    message_id             text NOT NULL,
    body                   jsonb NOT NULL,
    application_properties jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason                 text NOT NULL,
    description            text,
    delivery_count         integer NOT NULL DEFAULT 0,
    enqueued_at            timestamptz,
    dead_lettered_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at            timestamptz,
    replay_message_id      text,
    UNIQUE (source, queue, message_id, dead_lettered_at),
    CHECK ((replayed_at IS NULL) = (replay_message_id IS NULL))
);
CREATE INDEX dead_letters_waiting ON dead_letters (dead_lettered_at DESC) WHERE replayed_at IS NULL;

-- ------------------------------------------------------------------------------------------
-- Operations: errors, alerts, API keys, rate limiting
-- ------------------------------------------------------------------------------------------
CREATE TABLE error_records (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('scheduler', 'worker', 'consolidator', 'fanin', 'api', 'bus')),
    code              text NOT NULL,
    message           text NOT NULL,
    run_id            uuid,
    partition_id      text,
    feed              text REFERENCES feeds,
    supplier_stone_id text,
    context           jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX error_records_run ON error_records (run_id, occurred_at DESC) WHERE run_id IS NOT NULL;
CREATE INDEX error_records_recent ON error_records (occurred_at DESC);

-- Alert outbox: written in the transaction that decides, delivered to the webhook afterwards.
CREATE TABLE alerts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN
                       ('run_skipped', 'run_failed', 'run_stalled', 'run_partial', 'run_cancelled',
                        'mapping_errors', 'dead_letter', 'consolidation_failed')),
    severity       text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    run_id         uuid,
    feed           text REFERENCES feeds,
    title          text NOT NULL,
    message        text NOT NULL,
    details        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    delivered_at   timestamptz,
    delivery_attempts integer NOT NULL DEFAULT 0,
    delivery_error text
);
CREATE INDEX alerts_undelivered ON alerts (created_at) WHERE delivered_at IS NULL;

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash     text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix   text NOT NULL,
    client_name  text NOT NULL CHECK (client_name <> ''),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'admin']::text[]),
    active       boolean NOT NULL DEFAULT true,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (active OR revoked_at IS NOT NULL)
);

-- HMAC signatures already accepted, kept for the tolerance window (shared by every API replica).
CREATE TABLE api_hmac_nonces (
    signature  text PRIMARY KEY,
    client_id  text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX api_hmac_nonces_expiry ON api_hmac_nonces (expires_at);

-- Token buckets shared by every process that calls the supplier (its limit is per account).
CREATE TABLE rate_limit_buckets (
    key        text PRIMARY KEY,
    tokens     double precision NOT NULL,
    capacity   double precision NOT NULL CHECK (capacity > 0),
    rate_per_s double precision NOT NULL CHECK (rate_per_s > 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
