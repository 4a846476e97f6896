//! Risk grading: every piece of equipment gets a colour (blue, yellow,
//! orange, red) and every owner a class (A–D), from the alarm history and
//! the registry. Registry state reaches it through the registry-time rules'
//! alarms (overdue inspection and maintenance), so the whole computation is
//! one SQL query over `alarms`, `equipment` and `owners`: it is installed as
//! the views `risk` and `owner_risk`, which the API reads and an analyst can
//! query (and reproduce) like any table. The weights are configuration
//! (`[risk]`, docs/risk.md).

use serde::{Deserialize, Serialize};

/// Weights and thresholds of the grading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// History counted: alarms raised within this many days (open alarms
    /// count whenever they were raised).
    pub window_days: u32,
    /// A critical alarm acknowledged later than this (or not at all) is a
    /// slow response.
    pub response_s: u32,
    pub weights: RiskWeights,
    /// Equipment scores from which the colour is yellow, orange, red.
    pub yellow_at: f64,
    pub orange_at: f64,
    pub red_at: f64,
    /// Owners: class D with any red equipment or a mean score from
    /// `class_d_mean`; C with any orange or from `class_c_mean`; B with any
    /// yellow; else A.
    pub class_c_mean: f64,
    pub class_d_mean: f64,
}

/// Points per occurrence of each factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskWeights {
    /// Each open critical alarm.
    pub open_critical: f64,
    /// An open `registry.inspection_overdue` (in use past its inspection).
    pub inspection_overdue: f64,
    /// An open `registry.maintenance_overdue`.
    pub maintenance_overdue: f64,
    /// Each `filling.operator_uncertified` alarm in the window.
    pub uncertified: f64,
    /// Each `elevator.frequent_faults` alarm in the window.
    pub repeat_faults: f64,
    /// Each critical alarm raised in the window.
    pub critical_alarms: f64,
    /// Each slow response to a critical alarm in the window.
    pub slow_response: f64,
}

impl Default for RiskWeights {
    fn default() -> Self {
        RiskWeights {
            open_critical: 5.0,
            inspection_overdue: 5.0,
            maintenance_overdue: 2.0,
            uncertified: 3.0,
            repeat_faults: 3.0,
            critical_alarms: 1.0,
            slow_response: 1.0,
        }
    }
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            window_days: 90,
            response_s: 300,
            weights: RiskWeights::default(),
            yellow_at: 1.0,
            orange_at: 5.0,
            red_at: 10.0,
            class_c_mean: 2.0,
            class_d_mean: 5.0,
        }
    }
}

impl RiskConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        let w = &self.weights;
        let all = [
            w.open_critical,
            w.inspection_overdue,
            w.maintenance_overdue,
            w.uncertified,
            w.repeat_faults,
            w.critical_alarms,
            w.slow_response,
            self.class_c_mean,
            self.class_d_mean,
        ];
        anyhow::ensure!(
            all.iter().all(|x| x.is_finite() && *x >= 0.0),
            "risk weights and means must be numbers ≥ 0"
        );
        anyhow::ensure!(
            0.0 < self.yellow_at
                && self.yellow_at <= self.orange_at
                && self.orange_at <= self.red_at,
            "risk thresholds must be 0 < yellow_at ≤ orange_at ≤ red_at"
        );
        anyhow::ensure!(self.window_days > 0, "risk.window_days must be ≥ 1");
        Ok(())
    }

    /// The views, in the order they must be defined: `(name, SELECT)`. The
    /// same SQL runs on DataFusion and PostgreSQL.
    pub fn views(&self) -> [(&'static str, String); 2] {
        let w = &self.weights;
        let window = format!("now() - INTERVAL '{} days'", self.window_days);
        let count = |cond: &str| format!("SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)");
        let open = "a.state <> 'cleared'";
        let recent = format!("a.raised_at >= {window}");
        let factors = format!(
            "SELECT a.equipment_id, \
               {} AS open_critical, {} AS inspection_overdue, {} AS maintenance_overdue, \
               {} AS uncertified, {} AS repeat_faults, {} AS critical_alarms, {} AS slow_responses \
             FROM alarms a WHERE {open} OR {recent} GROUP BY a.equipment_id",
            count(&format!("{open} AND a.severity = 'critical'")),
            count(&format!(
                "{open} AND a.rule = 'registry.inspection_overdue'"
            )),
            count(&format!(
                "{open} AND a.rule = 'registry.maintenance_overdue'"
            )),
            count(&format!(
                "{recent} AND a.rule = 'filling.operator_uncertified'"
            )),
            count(&format!("{recent} AND a.rule = 'elevator.frequent_faults'")),
            count(&format!("{recent} AND a.severity = 'critical'")),
            count(&format!(
                "{recent} AND a.severity = 'critical' AND a.raised_at < now() - INTERVAL '{r} seconds' \
                 AND (a.acknowledged_at IS NULL OR a.acknowledged_at > a.raised_at + INTERVAL '{r} seconds')",
                r = self.response_s
            )),
        );
        let n = |c: &str| format!("COALESCE(f.{c}, 0)");
        let score = format!(
            "({} * {} + {} * {} + {} * {} + {} * {} + {} * {} + {} * {} + {} * {})",
            lit(w.open_critical),
            n("open_critical"),
            lit(w.inspection_overdue),
            n("inspection_overdue"),
            lit(w.maintenance_overdue),
            n("maintenance_overdue"),
            lit(w.uncertified),
            n("uncertified"),
            lit(w.repeat_faults),
            n("repeat_faults"),
            lit(w.critical_alarms),
            n("critical_alarms"),
            lit(w.slow_response),
            n("slow_responses"),
        );
        let risk = format!(
            "SELECT e.equipment_id, e.owner_id, e.region, e.category, \
               {oc} AS open_critical, {io} AS inspection_overdue, {mo} AS maintenance_overdue, \
               {un} AS uncertified, {rf} AS repeat_faults, {ca} AS critical_alarms, {sr} AS slow_responses, \
               {score} AS score, \
               CASE WHEN {score} >= {red} THEN 'red' WHEN {score} >= {orange} THEN 'orange' \
                    WHEN {score} >= {yellow} THEN 'yellow' ELSE 'blue' END AS colour \
             FROM equipment e LEFT JOIN ({factors}) f ON f.equipment_id = e.equipment_id",
            oc = n("open_critical"),
            io = n("inspection_overdue"),
            mo = n("maintenance_overdue"),
            un = n("uncertified"),
            rf = n("repeat_faults"),
            ca = n("critical_alarms"),
            sr = n("slow_responses"),
            red = lit(self.red_at),
            orange = lit(self.orange_at),
            yellow = lit(self.yellow_at),
        );
        let colours = |c: &str| format!("SUM(CASE WHEN r.colour = '{c}' THEN 1 ELSE 0 END)");
        let owner_risk = format!(
            "SELECT o.owner_id, o.name, o.region, COUNT(r.equipment_id) AS equipment, \
               {red} AS red, {orange} AS orange, {yellow} AS yellow, {blue} AS blue, \
               COALESCE(AVG(r.score), 0.0) AS mean_score, \
               CASE WHEN {red} > 0 OR COALESCE(AVG(r.score), 0.0) >= {d} THEN 'D' \
                    WHEN {orange} > 0 OR COALESCE(AVG(r.score), 0.0) >= {c} THEN 'C' \
                    WHEN {yellow} > 0 THEN 'B' ELSE 'A' END AS class \
             FROM owners o LEFT JOIN risk r ON r.owner_id = o.owner_id \
             GROUP BY o.owner_id, o.name, o.region",
            red = colours("red"),
            orange = colours("orange"),
            yellow = colours("yellow"),
            blue = colours("blue"),
            d = lit(self.class_d_mean),
            c = lit(self.class_c_mean),
        );
        [("risk", risk), ("owner_risk", owner_risk)]
    }
}

/// A weight as a SQL literal that both backends read as a float.
fn lit(x: f64) -> String {
    format!("CAST({x:?} AS DOUBLE PRECISION)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_reach_the_sql_and_bad_ones_are_refused() {
        let mut cfg = RiskConfig::default();
        cfg.weights.open_critical = 7.5;
        let [(risk, sql), (owners, _)] = cfg.views();
        assert_eq!((risk, owners), ("risk", "owner_risk"));
        assert!(sql.contains("CAST(7.5 AS DOUBLE PRECISION)"), "{sql}");
        assert!(sql.contains("INTERVAL '90 days'"));
        cfg.check().unwrap();
        cfg.orange_at = 20.0;
        assert!(cfg.check().is_err(), "orange above red");
        let mut cfg = RiskConfig::default();
        cfg.weights.slow_response = -1.0;
        assert!(cfg.check().is_err());
    }
}
