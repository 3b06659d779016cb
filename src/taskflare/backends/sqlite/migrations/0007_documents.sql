-- taskflare schema 7: the namespaced document store. One JSON document per
-- (namespace, key), written by `app.namespace(...)` and the built-in job types
-- (imports, crawled pages, embeddings); `updated_at` is the time of the last write.
CREATE TABLE documents (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
