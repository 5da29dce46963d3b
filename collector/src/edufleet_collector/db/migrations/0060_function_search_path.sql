-- Pin the search path of every function of the schema.
--
-- pg_dump restores with an empty search path, so a function that calls
-- another by its bare name (inside an index expression, a generated column or
-- a check) fails during pg_restore. Giving each function its own search path
-- makes backups restore as they were taken.

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        LEFT JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
        WHERE n.nspname = 'public' AND d.objid IS NULL AND p.prokind = 'f'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = public', fn);
    END LOOP;
END
$$;
