//! Spec §7.1: policy-level preservation, one test per row (P1–P40). Checkpoint i has time
//! base + i seconds; P36–P39 use a fixed `now`. Rows are gated by the feature of their policy.

mod common;

#[allow(unused_imports)]
use chrono::{TimeDelta, TimeZone, Utc};
#[allow(unused_imports)]
use ckpt_core::{CheckpointInfo, ErrorKind, Step};
#[allow(unused_imports)]
use ckpt_policy::*;
#[allow(unused_imports)]
use common::{cx, kept, listing, with_loss};

/// Asserts that `policy` keeps `expected` of `cs`, naming the row on failure.
#[allow(dead_code)]
fn row(id: &str, policy: &dyn PreservationPolicy, cs: &[CheckpointInfo], expected: &[Step]) {
    assert!(policy.validate().is_ok(), "{id}: policy should be valid");
    assert_eq!(kept(policy, cs, &cx()), expected, "{id}: {policy:?}");
}

#[allow(dead_code)]
const ZERO_TO_FOUR: [Step; 5] = [0, 1, 2, 3, 4];
#[allow(dead_code)]
const LONG: [Step; 10] = [0, 1, 2, 4, 5, 8, 9, 13, 14, 25];

#[cfg(feature = "latest")]
mod latest {
    use super::*;

    #[test]
    fn p1() {
        row(
            "P1",
            &LatestN::new(None),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p2() {
        row(
            "P2",
            &LatestN::new(Some(3)),
            &listing(&ZERO_TO_FOUR),
            &[2, 3, 4],
        );
    }
    #[test]
    fn p3() {
        row(
            "P3",
            &LatestN::new(Some(15)),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p4() {
        row("P4", &LatestN::new(Some(0)), &listing(&[0, 1, 2]), &[]);
    }
}

#[cfg(feature = "time")]
mod every_n_seconds {
    use super::*;

    #[test]
    fn p5() {
        row(
            "P5",
            &EveryNSeconds::new(1),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p6() {
        row(
            "P6",
            &EveryNSeconds::new(3),
            &listing(&ZERO_TO_FOUR),
            &[0, 3],
        );
    }
    #[test]
    fn p7() {
        row("P7", &EveryNSeconds::new(6), &listing(&ZERO_TO_FOUR), &[0]);
    }
}

#[cfg(feature = "interval")]
mod every_n_steps {
    use super::*;

    fn chained(interval_steps: Step, max_to_keep: Option<u64>) -> EveryNSteps {
        EveryNSteps {
            interval_steps,
            exact_interval: false,
            max_to_keep,
        }
    }

    #[test]
    fn p8() {
        row(
            "P8",
            &EveryNSteps::new(1),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p9() {
        row("P9", &EveryNSteps::new(3), &listing(&[0, 1, 2, 4]), &[0]);
    }
    #[test]
    fn p10() {
        row("P10", &chained(3, None), &listing(&[0, 1, 2, 4]), &[0, 4]);
    }
    #[test]
    fn p11() {
        row("P11", &EveryNSteps::new(6), &listing(&ZERO_TO_FOUR), &[0]);
    }
    #[test]
    fn p12() {
        row(
            "P12",
            &chained(3, None),
            &listing(&LONG),
            &[0, 4, 8, 13, 25],
        );
    }
    #[test]
    fn p13() {
        let p = EveryNSteps {
            max_to_keep: Some(3),
            ..EveryNSteps::new(1)
        };
        row("P13", &p, &listing(&ZERO_TO_FOUR), &[2, 3, 4]);
    }
    #[test]
    fn p14() {
        row("P14", &chained(3, Some(3)), &listing(&LONG), &[8, 13, 25]);
    }
    #[test]
    fn p15() {
        let cs = listing(&ZERO_TO_FOUR);
        let policies: [Box<dyn PreservationPolicy>; 3] = [
            Box::new(EveryNSteps::new(0)),
            Box::new(EveryNSteps {
                interval_steps: 0,
                exact_interval: false,
                max_to_keep: None,
            }),
            Box::new(EveryNStepsClosest::new(0, None)),
        ];
        for p in policies {
            let err = p
                .validate()
                .expect_err("P15: interval_steps 0 must be rejected");
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "P15: {p:?}");
            assert!(err.message().contains("interval_steps"), "P15: {err}");
            // Asked anyway: no panic, nothing deleted.
            assert_eq!(kept(p.as_ref(), &cs, &cx()), ZERO_TO_FOUR, "P15: {p:?}");
        }
        let any = AnyPreservationPolicy::new(vec![
            Box::new(PreserveAll {}),
            Box::new(EveryNStepsClosest::new(0, None)),
        ]);
        assert_eq!(
            any.validate().unwrap_err().kind(),
            ErrorKind::InvalidConfig,
            "P15 in Any"
        );
    }
    #[test]
    fn p16() {
        row(
            "P16",
            &EveryNStepsClosest::new(1, None),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p17() {
        row(
            "P17",
            &EveryNStepsClosest::new(3, None),
            &listing(&[0, 1, 2, 4]),
            &[0, 4],
        );
    }
    #[test]
    fn p18() {
        row(
            "P18",
            &EveryNStepsClosest::new(3, None),
            &listing(&LONG),
            &[0, 4, 5, 9, 13, 14, 25],
        );
    }
    #[test]
    fn p19() {
        row(
            "P19",
            &EveryNStepsClosest::new(1, Some(3)),
            &listing(&ZERO_TO_FOUR),
            &[2, 3, 4],
        );
    }
    #[test]
    fn p20() {
        row(
            "P20",
            &EveryNStepsClosest::new(3, Some(3)),
            &listing(&LONG),
            &[13, 14, 25],
        );
    }
    #[test]
    fn p21() {
        row(
            "P21",
            &EveryNStepsClosest::new(2, None),
            &listing(&[1, 3, 5, 7]),
            &[1, 5, 7],
        );
    }
    #[test]
    fn p22() {
        let steps: Vec<Step> = (0..10).collect();
        row(
            "P22",
            &EveryNStepsClosest::new(2, None),
            &listing(&steps),
            &[0, 2, 4, 6, 8, 9],
        );
    }
    #[test]
    fn p23() {
        row(
            "P23",
            &EveryNStepsClosest::new(4, None),
            &listing(&[1, 2, 3, 5, 6, 7, 9, 10]),
            &[1, 5, 9, 10],
        );
    }
}

#[cfg(feature = "custom")]
mod custom_steps {
    use super::*;

    #[test]
    fn p24() {
        row(
            "P24",
            &CustomSteps::new([0, 2, 3]),
            &listing(&ZERO_TO_FOUR),
            &[0, 2, 3],
        );
    }
    #[test]
    fn p25() {
        row(
            "P25",
            &CustomSteps::new([0, 1, 2, 3, 4]),
            &listing(&ZERO_TO_FOUR),
            &[0, 1, 2, 3, 4],
        );
    }
    #[test]
    fn p26() {
        row(
            "P26",
            &CustomSteps::new([14, 13]),
            &listing(&ZERO_TO_FOUR),
            &[],
        );
    }
}

#[cfg(feature = "best")]
mod best_n {
    use super::*;

    fn min(n: Option<u64>) -> BestN {
        BestN::new("loss", BestMode::from_reverse(true), n)
    }

    #[test]
    fn p27() {
        let cs = with_loss(
            &ZERO_TO_FOUR,
            &[Some(5.0), None, Some(3.0), None, Some(7.0)],
        );
        row("P27", &min(None), &cs, &[0, 1, 2, 3, 4]);
    }
    #[test]
    fn p28() {
        let cs = with_loss(
            &ZERO_TO_FOUR,
            &[Some(7.0), None, Some(4.0), None, Some(5.0)],
        );
        row("P28", &min(Some(1)), &cs, &[1, 2, 3]);
    }
    #[test]
    fn p29() {
        let cs = with_loss(
            &ZERO_TO_FOUR,
            &[Some(5.0), None, Some(4.0), None, Some(7.0)],
        );
        row("P29", &min(Some(4)), &cs, &[0, 1, 2, 3, 4]);
    }
    #[test]
    fn p30() {
        let cs = with_loss(
            &ZERO_TO_FOUR,
            &[Some(5.0), None, Some(4.0), None, Some(7.0)],
        );
        row(
            "P30",
            &min(Some(4)).keep_checkpoints_without_metrics(false),
            &cs,
            &[0, 2, 4],
        );
    }
    #[test]
    fn p31() {
        let cs = with_loss(&[0, 1, 2], &[Some(1.0), None, Some(2.0)]);
        row("P31", &min(Some(0)), &cs, &[]);
        row(
            "P31 (max)",
            &BestN::new("loss", BestMode::Max, Some(0)),
            &cs,
            &[],
        );
    }
    #[test]
    fn p32() {
        let cs = with_loss(&[0, 1, 2], &[Some(1.0), None, Some(2.0)]);
        row(
            "P32",
            &min(Some(5)).keep_checkpoints_without_metrics(false),
            &cs,
            &[0, 1, 2],
        );
    }
    #[test]
    fn p33() {
        let cs = with_loss(&[0, 1, 2, 3], &[Some(3.0), Some(1.0), Some(4.0), Some(1.0)]);
        row(
            "P33",
            &BestN::new("loss", BestMode::from_reverse(false), Some(2)),
            &cs,
            &[0, 2],
        );
    }
    #[test]
    fn p34() {
        let cs = with_loss(&[0, 1, 2, 3], &[Some(3.0), Some(1.0), Some(4.0), Some(1.0)]);
        row("P34", &min(Some(2)), &cs, &[1, 3]);
    }
}

#[cfg(all(
    feature = "latest",
    feature = "time",
    feature = "custom",
    feature = "best",
    feature = "interval"
))]
#[test]
fn p35() {
    let steps = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11];
    let l = |v: f64| Some(v);
    let losses = [
        l(5.0),
        None,
        l(4.0),
        None,
        l(3.0),
        None,
        l(11.0),
        None,
        l(8.0),
        None,
        l(12.0),
    ];
    let cs = with_loss(&steps, &losses);
    let children: Vec<(Box<dyn PreservationPolicy>, Vec<Step>)> = vec![
        (Box::new(LatestN::new(Some(3))), vec![9, 10, 11]),
        (Box::new(EveryNSeconds::new(3)), vec![0, 3, 6, 10]),
        (Box::new(CustomSteps::new([0, 3])), vec![0, 3]),
        (
            Box::new(BestN::new("loss", BestMode::Min, Some(2))),
            vec![1, 2, 3, 4, 5, 7, 10],
        ),
        (Box::new(EveryNSteps::new(6)), vec![0, 6]),
    ];
    for (i, (p, expected)) in children.iter().enumerate() {
        assert_eq!(
            &kept(p.as_ref(), &cs, &cx()),
            expected,
            "P35 child {i}: {p:?}"
        );
    }
    let any = AnyPreservationPolicy::new(children.into_iter().map(|(p, _)| p).collect());
    row("P35", &any, &cs, &steps);
}

#[cfg(feature = "time")]
mod latest_duration {
    use super::*;

    /// Steps 0..3 aged 30 h, 25 h, 23 h and 10 h at now = 2026-05-29 12:00 UTC.
    fn check(id: &str, hours: u64, expected: &[Step]) {
        let now = Utc.with_ymd_and_hms(2026, 5, 29, 12, 0, 0).unwrap();
        let cs: Vec<CheckpointInfo> = [30, 25, 23, 10]
            .iter()
            .enumerate()
            .map(|(s, &age)| CheckpointInfo::new(s as Step, now - TimeDelta::hours(age), None))
            .collect();
        let p = LatestDuration::new(hours * 3600);
        assert!(p.validate().is_ok());
        assert_eq!(
            kept(&p, &cs, &PreservationContext { now }),
            expected,
            "{id}: {p:?}"
        );
    }

    #[test]
    fn p36() {
        check("P36", 24, &[2, 3]);
    }
    #[test]
    fn p37() {
        check("P37", 28, &[1, 2, 3]);
    }
    #[test]
    fn p38() {
        check("P38", 5, &[]);
    }
    #[test]
    fn p39() {
        check("P39", 100, &[0, 1, 2, 3]);
    }
}

#[test]
fn p40() {
    #[allow(unused_mut)]
    let mut policies: Vec<Box<dyn PreservationPolicy>> = vec![
        Box::new(PreserveAll {}),
        Box::new(AnyPreservationPolicy::new(vec![Box::new(PreserveAll {})])),
        Box::new(AnyPreservationPolicy::default()),
    ];
    #[cfg(feature = "latest")]
    policies.extend([
        Box::new(LatestN::new(None)) as Box<dyn PreservationPolicy>,
        Box::new(LatestN::new(Some(0))),
        Box::new(LatestN::new(Some(3))),
    ]);
    #[cfg(feature = "time")]
    policies.extend([
        Box::new(EveryNSeconds::new(3)) as Box<dyn PreservationPolicy>,
        Box::new(LatestDuration::new(10)),
    ]);
    #[cfg(feature = "interval")]
    policies.extend([
        Box::new(EveryNSteps::new(3)) as Box<dyn PreservationPolicy>,
        Box::new(EveryNSteps {
            interval_steps: 3,
            exact_interval: false,
            max_to_keep: Some(2),
        }),
        Box::new(EveryNStepsClosest::new(3, Some(2))),
    ]);
    #[cfg(feature = "custom")]
    policies.push(Box::new(CustomSteps::new([1, 2])));
    #[cfg(feature = "best")]
    policies.extend([
        Box::new(BestN::new("loss", BestMode::Min, Some(0))) as Box<dyn PreservationPolicy>,
        Box::new(BestN::new("loss", BestMode::Max, Some(2))),
        Box::new(BestN::new("loss", BestMode::Max, None)),
    ]);
    for p in &policies {
        assert!(p.should_preserve(&[], &cx()).is_empty(), "P40: {p:?}");
    }
}
