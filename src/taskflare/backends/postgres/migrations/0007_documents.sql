-- taskflare schema 7: the namespaced document store. One JSON document per
-- (namespace, key), written by `app.namespace(...)` and the built-in job types
-- (imports, crawled pages, embeddings); `updated_at` is the time of the last write.
-- Mirrors sqlite/migrations/0007_documents.sql. Keys sort by code point ("C"), as in
-- SQLite, so a listing cursor means the same on both backends.
CREATE TABLE documents (
    namespace  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      jsonb NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (namespace, key)
);
