-- The words of each record for the query room's lexical retriever: an FTS5
-- index (Porter stemming) over its summary and the string values of its body,
-- kept by triggers in the statement that writes the record. Contentless: the
-- record's text stays in `records` alone.
CREATE VIRTUAL TABLE IF NOT EXISTS records_words USING fts5(
    summary, body, content = '', contentless_delete = 1, tokenize = 'porter unicode61'
);

INSERT INTO records_words (rowid, summary, body)
SELECT rowid, summary, (SELECT group_concat(value, ' ') FROM json_tree(records.body) WHERE type = 'text')
FROM records;

CREATE TRIGGER IF NOT EXISTS records_words_insert AFTER INSERT ON records BEGIN
    INSERT INTO records_words (rowid, summary, body)
    VALUES (new.rowid, new.summary, (SELECT group_concat(value, ' ') FROM json_tree(new.body) WHERE type = 'text'));
END;

CREATE TRIGGER IF NOT EXISTS records_words_update AFTER UPDATE OF summary, body ON records BEGIN
    DELETE FROM records_words WHERE rowid = old.rowid;
    INSERT INTO records_words (rowid, summary, body)
    VALUES (new.rowid, new.summary, (SELECT group_concat(value, ' ') FROM json_tree(new.body) WHERE type = 'text'));
END;

CREATE TRIGGER IF NOT EXISTS records_words_delete AFTER DELETE ON records BEGIN
    DELETE FROM records_words WHERE rowid = old.rowid;
END;
