-- A repricing job that fails leaves the catalogue partly repriced until someone resumes it: it
-- raises an alert, like the other states an operator must act on.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check CHECK (kind IN
    ('run_skipped', 'run_failed', 'run_stalled', 'run_partial', 'run_cancelled',
     'mapping_errors', 'dead_letter', 'consolidation_failed', 'repricing_failed'));
