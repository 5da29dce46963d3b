-- Leave room on each page of tickets so that the SLA figures written after
-- every change are heap-only updates, without touching the indexes.
ALTER TABLE tickets SET (fillfactor = 80);
ALTER TABLE notifications SET (fillfactor = 80);
ALTER TABLE ticket_timers SET (fillfactor = 80);
