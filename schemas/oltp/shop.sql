-- The shop's OLTP tables in PostgreSQL (database `shop`): written by the traffic
-- simulator (producers/), captured by Debezium (connect/) into shop.public.<table>.
-- This file is the contract between the two; both apply it (idempotent).
--
-- TIMESTAMPTZ(3): millisecond instants. Debezium publishes them through kappa's
-- converter (infra/debezium-ext) as Connect Timestamps = Avro timestamp-millis,
-- so the precision declared here is exactly the precision on the log.
--
-- REPLICA IDENTITY FULL: updates and deletes carry the whole before-image, so a
-- delete event says which customer/product an order belonged to, and changelogs
-- downstream can be built from Kafka alone.

CREATE TABLE IF NOT EXISTS customers (
    customer_id  BIGINT PRIMARY KEY,
    email        TEXT        NOT NULL,
    name         TEXT        NOT NULL,
    segment      TEXT        NOT NULL,           -- e.g. new | regular | vip
    country      CHAR(2)     NOT NULL,           -- ISO 3166-1 alpha-2
    signup_at    TIMESTAMPTZ(3) NOT NULL,
    updated_at   TIMESTAMPTZ(3) NOT NULL
);
ALTER TABLE customers REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS products (
    product_id   BIGINT PRIMARY KEY,
    name         TEXT          NOT NULL,
    category     TEXT          NOT NULL,
    price        NUMERIC(12,2) NOT NULL CHECK (price >= 0),
    updated_at   TIMESTAMPTZ(3) NOT NULL
);
ALTER TABLE products REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS orders (
    order_id     BIGINT PRIMARY KEY,
    customer_id  BIGINT        NOT NULL REFERENCES customers (customer_id),
    session_id   TEXT          NOT NULL,         -- the click-stream session that checked out
    status       TEXT          NOT NULL,         -- placed | paid | shipped | delivered | cancelled
    item_count   INTEGER       NOT NULL CHECK (item_count > 0),
    total        NUMERIC(12,2) NOT NULL CHECK (total >= 0),
    created_at   TIMESTAMPTZ(3) NOT NULL,
    updated_at   TIMESTAMPTZ(3) NOT NULL
);
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE INDEX IF NOT EXISTS orders_customer_idx ON orders (customer_id);
