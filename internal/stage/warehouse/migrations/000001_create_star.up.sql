-- migration: create the star schema and the load ledger
--
-- Frozen: this file has shipped, and warehouses were created by it. Never
-- edit it; change the schema with a new migration (the next version number).
--
-- {{schema}} stands for the warehouse schema's quoted name, and the setting
-- sandstone.schema holds the name itself; nothing here is unqualified, as
-- the transaction's search_path is pg_catalog and pg_temp only.
--
-- A table that already exists (a warehouse whose tables someone else
-- created) is left exactly as it is: load checks afterwards that it has the
-- columns load writes. Dimensions are keyed by their id, facts by a serial
-- id with a unique key on the version (source id, last-updated date and
-- time), so that no version can land twice.

-- The warehouse tables there before this migration, which get no foreign keys.
SELECT pg_catalog.set_config('sandstone.prepared', coalesce(pg_catalog.string_agg(c.relname::text, ','), ''), true)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = pg_catalog.current_setting('sandstone.schema') AND c.relkind IN ('r', 'p');

CREATE TABLE IF NOT EXISTS {{schema}}.dim_date (
	date_id date NOT NULL,
	year int NOT NULL,
	month int NOT NULL,
	day int NOT NULL,
	day_of_week int NOT NULL,
	day_name varchar NOT NULL,
	month_name varchar NOT NULL,
	quarter int NOT NULL,
	CONSTRAINT dim_date_pkey PRIMARY KEY (date_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_staff (
	staff_id int NOT NULL,
	first_name varchar NOT NULL,
	last_name varchar NOT NULL,
	department_name varchar NOT NULL,
	location varchar NOT NULL,
	email_address varchar NOT NULL,
	CONSTRAINT dim_staff_pkey PRIMARY KEY (staff_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_location (
	location_id int NOT NULL,
	address_line_1 varchar NOT NULL,
	address_line_2 varchar,
	district varchar,
	city varchar NOT NULL,
	postal_code varchar NOT NULL,
	country varchar NOT NULL,
	phone varchar NOT NULL,
	CONSTRAINT dim_location_pkey PRIMARY KEY (location_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_currency (
	currency_id int NOT NULL,
	currency_code varchar NOT NULL,
	currency_name varchar NOT NULL,
	CONSTRAINT dim_currency_pkey PRIMARY KEY (currency_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_design (
	design_id int NOT NULL,
	design_name varchar NOT NULL,
	file_location varchar NOT NULL,
	file_name varchar NOT NULL,
	CONSTRAINT dim_design_pkey PRIMARY KEY (design_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_counterparty (
	counterparty_id int NOT NULL,
	counterparty_legal_name varchar NOT NULL,
	counterparty_legal_address_line_1 varchar NOT NULL,
	counterparty_legal_address_line_2 varchar,
	counterparty_legal_district varchar,
	counterparty_legal_city varchar NOT NULL,
	counterparty_legal_postal_code varchar NOT NULL,
	counterparty_legal_country varchar NOT NULL,
	counterparty_legal_phone_number varchar NOT NULL,
	CONSTRAINT dim_counterparty_pkey PRIMARY KEY (counterparty_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_payment_type (
	payment_type_id int NOT NULL,
	payment_type_name varchar NOT NULL,
	CONSTRAINT dim_payment_type_pkey PRIMARY KEY (payment_type_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.dim_transaction (
	transaction_id int NOT NULL,
	transaction_type varchar NOT NULL,
	sales_order_id int,
	purchase_order_id int,
	CONSTRAINT dim_transaction_pkey PRIMARY KEY (transaction_id)
);

CREATE TABLE IF NOT EXISTS {{schema}}.fact_sales_order (
	sales_record_id serial,
	sales_order_id int NOT NULL,
	created_date date NOT NULL,
	created_time time NOT NULL,
	last_updated_date date NOT NULL,
	last_updated_time time NOT NULL,
	sales_staff_id int NOT NULL,
	counterparty_id int NOT NULL,
	units_sold int NOT NULL,
	unit_price numeric(10,2) NOT NULL,
	currency_id int NOT NULL,
	design_id int NOT NULL,
	agreed_payment_date date NOT NULL,
	agreed_delivery_date date NOT NULL,
	agreed_delivery_location_id int NOT NULL,
	CONSTRAINT fact_sales_order_pkey PRIMARY KEY (sales_record_id),
	CONSTRAINT fact_sales_order_version_key UNIQUE (sales_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS {{schema}}.fact_purchase_order (
	purchase_record_id serial,
	purchase_order_id int NOT NULL,
	created_date date NOT NULL,
	created_time time NOT NULL,
	last_updated_date date NOT NULL,
	last_updated_time time NOT NULL,
	staff_id int NOT NULL,
	counterparty_id int NOT NULL,
	item_code varchar NOT NULL,
	item_quantity int NOT NULL,
	item_unit_price numeric(10,2) NOT NULL,
	currency_id int NOT NULL,
	agreed_delivery_date date NOT NULL,
	agreed_payment_date date NOT NULL,
	agreed_delivery_location_id int NOT NULL,
	CONSTRAINT fact_purchase_order_pkey PRIMARY KEY (purchase_record_id),
	CONSTRAINT fact_purchase_order_version_key UNIQUE (purchase_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS {{schema}}.fact_payment (
	payment_record_id serial,
	payment_id int NOT NULL,
	created_date date NOT NULL,
	created_time time NOT NULL,
	last_updated_date date NOT NULL,
	last_updated time NOT NULL,
	transaction_id int NOT NULL,
	counterparty_id int NOT NULL,
	payment_amount numeric(10,2) NOT NULL,
	currency_id int NOT NULL,
	payment_type_id int NOT NULL,
	paid bool NOT NULL,
	payment_date date NOT NULL,
	CONSTRAINT fact_payment_pkey PRIMARY KEY (payment_record_id),
	CONSTRAINT fact_payment_version_key UNIQUE (payment_id, last_updated_date, last_updated)
);

-- A foreign key from each fact column to the dimension it refers to, on the
-- fact tables this migration created, where the dimension has a unique key
-- on the referenced column that a foreign key can use.
DO $fk$
DECLARE
	s text := pg_catalog.current_setting('sandstone.schema');
	prepared text[] := pg_catalog.string_to_array(pg_catalog.current_setting('sandstone.prepared'), ',');
	fk record;
BEGIN
	FOR fk IN SELECT * FROM (VALUES
		('fact_sales_order', 'created_date', 'dim_date', 'date_id'),
		('fact_sales_order', 'last_updated_date', 'dim_date', 'date_id'),
		('fact_sales_order', 'sales_staff_id', 'dim_staff', 'staff_id'),
		('fact_sales_order', 'counterparty_id', 'dim_counterparty', 'counterparty_id'),
		('fact_sales_order', 'currency_id', 'dim_currency', 'currency_id'),
		('fact_sales_order', 'design_id', 'dim_design', 'design_id'),
		('fact_sales_order', 'agreed_payment_date', 'dim_date', 'date_id'),
		('fact_sales_order', 'agreed_delivery_date', 'dim_date', 'date_id'),
		('fact_sales_order', 'agreed_delivery_location_id', 'dim_location', 'location_id'),
		('fact_purchase_order', 'created_date', 'dim_date', 'date_id'),
		('fact_purchase_order', 'last_updated_date', 'dim_date', 'date_id'),
		('fact_purchase_order', 'staff_id', 'dim_staff', 'staff_id'),
		('fact_purchase_order', 'counterparty_id', 'dim_counterparty', 'counterparty_id'),
		('fact_purchase_order', 'currency_id', 'dim_currency', 'currency_id'),
		('fact_purchase_order', 'agreed_delivery_date', 'dim_date', 'date_id'),
		('fact_purchase_order', 'agreed_payment_date', 'dim_date', 'date_id'),
		('fact_purchase_order', 'agreed_delivery_location_id', 'dim_location', 'location_id'),
		('fact_payment', 'created_date', 'dim_date', 'date_id'),
		('fact_payment', 'last_updated_date', 'dim_date', 'date_id'),
		('fact_payment', 'transaction_id', 'dim_transaction', 'transaction_id'),
		('fact_payment', 'counterparty_id', 'dim_counterparty', 'counterparty_id'),
		('fact_payment', 'currency_id', 'dim_currency', 'currency_id'),
		('fact_payment', 'payment_type_id', 'dim_payment_type', 'payment_type_id'),
		('fact_payment', 'payment_date', 'dim_date', 'date_id')
	) AS v (fact, col, dim, key) LOOP
		CONTINUE WHEN fk.fact = ANY (prepared);
		IF NOT EXISTS (
			SELECT FROM pg_catalog.pg_index i
			JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
			JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = s AND c.relname = fk.dim
			  AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
			  AND ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(i.indkey) k
			        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) = ARRAY[fk.key]) THEN
			RAISE NOTICE 'no foreign key %.%: % has no unique key on %', fk.fact, fk.col, fk.dim, fk.key;
			CONTINUE;
		END IF;
		EXECUTE pg_catalog.format('ALTER TABLE %I.%I ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES %I.%I (%I)',
			s, fk.fact, fk.fact || '_' || fk.col || '_fkey', fk.col, s, fk.dim, fk.key);
	END LOOP;
END
$fk$;

-- The load ledger: one row per batch loaded, written in the batch's own
-- transaction.
CREATE TABLE IF NOT EXISTS {{schema}}.sandstone_loads (
	sequence bigint PRIMARY KEY,
	batch text NOT NULL,
	rows jsonb NOT NULL,
	source_newest timestamptz,
	loaded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	seconds double precision NOT NULL
);
