-- Each use of a code settles once, whatever time its stream entry carries. The partitioned
-- redemptions table cannot say so (its unique keys must hold the month), and the check that
-- searched it for the same use within 25 hours was at the planner's mercy: with a new
-- campaign missing from a month's statistics (a rush), it chose the (campaign, time) list index
-- and read every row of the campaign for each key, so settlement's cost grew with the month.
-- This table is the use's one unique key: `INSERT ... ON CONFLICT DO NOTHING` is an index probe
-- whatever the statistics say, and a use re-consumed after a Redis failover (a new time)
-- meets its first settlement here, in any month.
CREATE TABLE redemption_uses (
    campaign_id bigint NOT NULL,
    serial      bigint NOT NULL,
    use_no      integer NOT NULL,
    PRIMARY KEY (campaign_id, serial, use_no)
);

INSERT INTO redemption_uses (campaign_id, serial, use_no)
SELECT DISTINCT campaign_id, serial, use_no FROM redemptions;
