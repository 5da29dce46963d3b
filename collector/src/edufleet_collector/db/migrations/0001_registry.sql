-- The asset registry: regions, calendars, schools, rooms, devices, engineers.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Regions form a tree of any depth: province > city or county > district.
CREATE TABLE regions (
    code text PRIMARY KEY CHECK (code ~ '^[0-9A-Za-z_-]{1,32}$'),
    parent_code text REFERENCES regions (code),
    name_zh text NOT NULL CHECK (length(name_zh) BETWEEN 1 AND 100),
    name_en text NOT NULL DEFAULT '' CHECK (length(name_en) <= 100),
    level text NOT NULL CHECK (
        level IN ('province', 'city', 'county-level city', 'county', 'district')
    ),
    lat double precision CHECK (lat BETWEEN -90 AND 90),
    lon double precision CHECK (lon BETWEEN -180 AND 180),
    CHECK (parent_code IS DISTINCT FROM code)
);
CREATE INDEX regions_parent_idx ON regions (parent_code);

-- The region and all its descendants.
CREATE FUNCTION region_subtree(root text) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE tree(code) AS (
        SELECT code FROM regions WHERE code = root
        UNION
        SELECT r.code FROM regions r JOIN tree t ON r.parent_code = t.code
    )
    SELECT code FROM tree
$$;

-- The region and all its ancestors, nearest first.
CREATE FUNCTION region_ancestors(start text) RETURNS TABLE (code text, depth int)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up(code, parent_code, depth) AS (
        SELECT code, parent_code, 0 FROM regions WHERE code = start
        UNION ALL
        SELECT r.code, r.parent_code, up.depth + 1
        FROM regions r JOIN up ON r.code = up.parent_code
    )
    SELECT code, depth FROM up
$$;

-- School calendars. A calendar belongs to a region; a school may have a calendar
-- of its own whose parent is the region's, holding only what differs.
CREATE TABLE calendars (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    region_code text REFERENCES regions (code),
    parent_id bigint REFERENCES calendars (id),
    timezone text NOT NULL DEFAULT 'Asia/Shanghai',
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE UNIQUE INDEX calendars_one_per_region_idx
    ON calendars (region_code) WHERE parent_id IS NULL AND region_code IS NOT NULL;

-- Terms: the spans in which ordinary weekdays are school days.
CREATE TABLE calendar_terms (
    calendar_id bigint NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    name text NOT NULL,
    starts_on date NOT NULL,
    ends_on date NOT NULL,
    CHECK (ends_on >= starts_on),
    PRIMARY KEY (calendar_id, starts_on)
);

-- Exceptions by date, in both directions: a public holiday on a weekday
-- (is_school_day false) and a make-up working day on a weekend (true).
CREATE TABLE calendar_days (
    calendar_id bigint NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    day date NOT NULL,
    is_school_day boolean NOT NULL,
    note text NOT NULL DEFAULT '',
    PRIMARY KEY (calendar_id, day)
);

-- Daily service periods. Rows with a validity span (a summer timetable, say)
-- replace the rows without one on the days they cover.
CREATE TABLE calendar_hours (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    calendar_id bigint NOT NULL REFERENCES calendars (id) ON DELETE CASCADE,
    valid_from date,
    valid_to date,
    opens time NOT NULL,
    closes time NOT NULL,
    label text NOT NULL DEFAULT '',
    CHECK (closes > opens),
    CHECK ((valid_from IS NULL) = (valid_to IS NULL)),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
CREATE INDEX calendar_hours_calendar_idx ON calendar_hours (calendar_id);

CREATE TABLE schools (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE CHECK (code ~ '^[0-9A-Za-z_-]{1,32}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region_code text NOT NULL REFERENCES regions (code),
    address text NOT NULL DEFAULT '' CHECK (length(address) <= 300),
    lat double precision CHECK (lat BETWEEN -90 AND 90),
    lon double precision CHECK (lon BETWEEN -180 AND 180),
    contact_name text NOT NULL DEFAULT '' CHECK (length(contact_name) <= 100),
    contact_phone text NOT NULL DEFAULT '' CHECK (length(contact_phone) <= 40),
    calendar_id bigint REFERENCES calendars (id),
    boarding boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schools_region_idx ON schools (region_code, id);
CREATE INDEX schools_name_trgm_idx ON schools USING gin (name gin_trgm_ops);

CREATE TABLE rooms (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id bigint NOT NULL REFERENCES schools (id),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    building text NOT NULL DEFAULT '' CHECK (length(building) <= 100),
    floor text NOT NULL DEFAULT '' CHECK (length(floor) <= 20),
    kind text NOT NULL DEFAULT 'classroom' CHECK (
        kind IN ('classroom', 'lab', 'office', 'exam', 'hall', 'network', 'other')
    ),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, name)
);

-- Device categories: what a teacher may report, who can fix it, how long it lives.
CREATE TABLE device_categories (
    code text PRIMARY KEY,
    name_zh text NOT NULL,
    name_en text NOT NULL,
    skill text NOT NULL CHECK (skill IN ('pc', 'av', 'network')),
    service_life_years int NOT NULL CHECK (service_life_years > 0),
    always_on boolean NOT NULL DEFAULT false
);

CREATE TABLE category_symptoms (
    category text NOT NULL REFERENCES device_categories (code),
    code text NOT NULL,
    name_zh text NOT NULL,
    name_en text NOT NULL,
    position int NOT NULL,
    PRIMARY KEY (category, code)
);

INSERT INTO device_categories (code, name_zh, name_en, skill, service_life_years, always_on) VALUES
    ('desktop',    '台式电脑',     'Desktop PC',              'pc',      6, false),
    ('laptop',     '笔记本电脑',   'Laptop',                  'pc',      5, false),
    ('projector',  '投影仪',       'Projector',               'av',      6, false),
    ('panel',      '交互式平板',   'Interactive panel',       'av',      8, false),
    ('controller', '多媒体中控',   'Multimedia controller',   'av',      8, true),
    ('doc_camera', '实物展台',     'Document camera',         'av',      8, false),
    ('audio',      '音箱/功放/话筒', 'Speaker / amplifier / microphone', 'av', 8, false),
    ('printer',    '打印机',       'Printer',                 'pc',      6, false),
    ('network',    '交换机/无线AP', 'Network switch / access point', 'network', 8, true),
    ('camera',     '监控摄像头/录播系统', 'Camera / lecture capture', 'network', 6, true),
    ('class_sign', '电子班牌',     'E-class sign',            'av',      6, false);

INSERT INTO category_symptoms (category, code, name_zh, name_en, position) VALUES
    ('desktop', 'no_power', '无法开机', 'Won''t start', 1),
    ('desktop', 'freezing', '卡顿死机', 'Slow or freezing', 2),
    ('desktop', 'no_network', '无法上网', 'No network', 3),
    ('desktop', 'software', '软件打不开', 'Software won''t open', 4),
    ('desktop', 'peripherals', '键盘鼠标故障', 'Keyboard or mouse', 5),
    ('laptop', 'no_power', '无法开机', 'Won''t start', 1),
    ('laptop', 'freezing', '卡顿死机', 'Slow or freezing', 2),
    ('laptop', 'no_network', '无法上网', 'No network', 3),
    ('laptop', 'software', '软件打不开', 'Software won''t open', 4),
    ('laptop', 'peripherals', '键盘鼠标故障', 'Keyboard or mouse', 5),
    ('laptop', 'no_charge', '无法充电', 'Won''t charge', 6),
    ('projector', 'no_picture', '无画面', 'No picture', 1),
    ('projector', 'dim', '画面暗/偏色', 'Dim or colour cast', 2),
    ('projector', 'no_power', '无法开机', 'Won''t power on', 3),
    ('projector', 'overheat', '过热关机', 'Overheating shutdown', 4),
    ('projector', 'remote', '遥控失灵', 'Remote not working', 5),
    ('panel', 'touch', '触摸失灵', 'Touch not working', 1),
    ('panel', 'no_picture', '无画面', 'No picture', 2),
    ('panel', 'no_sound', '无声音', 'No sound', 3),
    ('panel', 'no_power', '无法开机', 'Won''t power on', 4),
    ('panel', 'builtin_pc', '内置电脑故障', 'Built-in PC fails', 5),
    ('controller', 'unresponsive', '面板无响应', 'Panel unresponsive', 1),
    ('controller', 'no_switch', '无法切换信号', 'Can''t switch source', 2),
    ('controller', 'no_sound', '无声音', 'No sound', 3),
    ('controller', 'screen', '幕布无法升降', 'Screen won''t lower', 4),
    ('doc_camera', 'no_picture', '无画面', 'No picture', 1),
    ('doc_camera', 'blurry', '画面模糊', 'Blurry', 2),
    ('audio', 'no_sound', '无声音', 'No sound', 1),
    ('audio', 'noise', '杂音/啸叫', 'Noise or feedback', 2),
    ('printer', 'jam', '卡纸', 'Paper jam', 1),
    ('printer', 'no_print', '无法打印', 'Won''t print', 2),
    ('printer', 'toner', '缺粉/缺墨', 'Toner or ink', 3),
    ('network', 'room_offline', '整间教室断网', 'Whole room offline', 1),
    ('network', 'wifi', '无线网络不可用', 'Wi-Fi unavailable', 2),
    ('camera', 'offline', '离线', 'Offline', 1),
    ('camera', 'no_recording', '无法录制', 'No recording', 2),
    ('class_sign', 'black_screen', '黑屏', 'Black screen', 1),
    ('class_sign', 'stale', '信息不更新', 'Not updating', 2);

-- Devices (assets). "uid" is the device's identity on the wire (MQTT topics);
-- the QR label carries a separate, revocable code (device_codes).
CREATE TABLE devices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL UNIQUE DEFAULT ('d' || substr(md5(random()::text || clock_timestamp()::text), 1, 15))
        CHECK (uid ~ '^[a-z0-9][a-z0-9_-]{2,63}$'),
    asset_tag text NOT NULL UNIQUE CHECK (length(asset_tag) BETWEEN 1 AND 64),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    category text NOT NULL REFERENCES device_categories (code),
    brand text NOT NULL DEFAULT '' CHECK (length(brand) <= 100),
    model text NOT NULL DEFAULT '' CHECK (length(model) <= 100),
    serial text NOT NULL DEFAULT '' CHECK (length(serial) <= 100),
    school_id bigint NOT NULL REFERENCES schools (id),
    room_id bigint REFERENCES rooms (id),
    parent_id bigint REFERENCES devices (id),
    purchase_date date,
    price numeric(12, 2) CHECK (price >= 0),
    warranty_until date,
    status text NOT NULL DEFAULT 'in_service' CHECK (
        status IN ('in_service', 'under_repair', 'spare', 'retired')
    ),
    inventory jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX devices_school_idx ON devices (school_id, id);
CREATE INDEX devices_school_category_idx ON devices (school_id, category, id);
CREATE INDEX devices_category_idx ON devices (category, id);
CREATE INDEX devices_status_idx ON devices (status, id) WHERE status <> 'in_service';
CREATE INDEX devices_room_idx ON devices (room_id) WHERE room_id IS NOT NULL;
CREATE INDEX devices_parent_idx ON devices (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX devices_purchase_idx ON devices (purchase_date);
CREATE INDEX devices_warranty_idx ON devices (warranty_until);
CREATE INDEX devices_search_trgm_idx ON devices USING gin (
    (asset_tag || ' ' || name || ' ' || brand || ' ' || model || ' ' || serial) gin_trgm_ops
);

-- The codes printed on QR labels. A reprint issues a new code; an old code can
-- be retired. Only one code per device is active.
CREATE TABLE device_codes (
    code text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{8,32}$'),
    device_id bigint NOT NULL REFERENCES devices (id),
    issued_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
CREATE UNIQUE INDEX device_codes_active_idx ON device_codes (device_id) WHERE retired_at IS NULL;

CREATE TABLE engineers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    phone text NOT NULL DEFAULT '' CHECK (length(phone) <= 40),
    email text NOT NULL DEFAULT '' CHECK (length(email) <= 200),
    wecom_userid text NOT NULL DEFAULT '',
    region_code text NOT NULL REFERENCES regions (code),
    skills text[] NOT NULL DEFAULT '{}'
        CHECK (skills <@ ARRAY['pc', 'av', 'network']::text[]),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'on_leave', 'inactive')),
    max_open_tickets int NOT NULL DEFAULT 15 CHECK (max_open_tickets > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engineers_region_idx ON engineers (region_code, id);

-- Which engineers look after which school: one primary, any number of backups,
-- ordered by rank. An engineer may cover schools in several districts.
CREATE TABLE school_engineers (
    school_id bigint NOT NULL REFERENCES schools (id),
    engineer_id bigint NOT NULL REFERENCES engineers (id),
    role text NOT NULL CHECK (role IN ('primary', 'backup')),
    rank int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, engineer_id)
);
CREATE UNIQUE INDEX school_engineers_one_primary_idx
    ON school_engineers (school_id) WHERE role = 'primary';
CREATE INDEX school_engineers_engineer_idx ON school_engineers (engineer_id);

-- What the collector knows of each device's connection: its state topic,
-- last message and agent session.
CREATE TABLE device_state (
    device_id bigint PRIMARY KEY REFERENCES devices (id),
    state text NOT NULL DEFAULT 'unknown' CHECK (
        state IN ('online', 'sleeping', 'lost', 'silent', 'unknown')
    ),
    state_since timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz,
    session_id text,
    agent_version text,
    clock_skew_seconds double precision,
    clock_suspect boolean NOT NULL DEFAULT false
);
CREATE INDEX device_state_state_idx ON device_state (state, last_seen);
