-- A dead letter that should not be replayed (a poison body, a page the worker would ignore, a message
-- dealt with by other means) is dismissed by an operator: when, and the operator's note saying why.
-- The letter stays as evidence until retention prunes it, counted from the dismissal. A letter is
-- resolved once: replayed or dismissed, never both.
ALTER TABLE dead_letters
    ADD COLUMN dismissed_at timestamptz,
    ADD COLUMN dismissal_note text,
    ADD CONSTRAINT dead_letters_dismissal_check CHECK ((dismissed_at IS NULL) = (dismissal_note IS NULL)),
    ADD CONSTRAINT dead_letters_dismissal_note_check
        CHECK (dismissal_note ~ '\S' AND char_length(dismissal_note) <= 500),
    ADD CONSTRAINT dead_letters_resolved_once_check CHECK (replayed_at IS NULL OR dismissed_at IS NULL);
-- The outstanding letters (listed by default, counted by the dashboard) are neither replayed nor dismissed.
DROP INDEX dead_letters_waiting;
CREATE INDEX dead_letters_waiting ON dead_letters (dead_lettered_at DESC)
    WHERE replayed_at IS NULL AND dismissed_at IS NULL;
