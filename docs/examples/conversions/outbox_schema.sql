-- The PostgreSQL outbox's table, for a DBA to make by hand (the site's
-- database user is "site" here); the site then finds it and makes nothing.
CREATE TABLE keitaro_postbacks (
    id BIGSERIAL NOT NULL,
    fields TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    claim TEXT,
    claim_until DOUBLE PRECISION,
    set_aside TEXT,
    PRIMARY KEY (id)
);
CREATE INDEX keitaro_postbacks_due ON keitaro_postbacks (next_attempt)
    WHERE set_aside IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON keitaro_postbacks TO site;
GRANT USAGE ON SEQUENCE keitaro_postbacks_id_seq TO site;
