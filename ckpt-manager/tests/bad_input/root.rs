//! Bad input, 9: the root itself.

use super::*;

#[test]
fn root_is_a_file() {
    case_at("root is a file", "rootfile", |sb| {
        fs::write(&sb.root, b"I am a file").unwrap();
        for read_only in [false, true] {
            let r = CheckpointManager::builder(sb.root_str())
                .read_only(read_only)
                .cleanup_tmp_directories(true)
                .root_metadata(loss(1.0))
                .build();
            expect_err(r, ErrorKind::InvalidArgument, &["rootfile", "file"]);
        }
        assert_eq!(fs::read(&sb.root).unwrap(), b"I am a file");
    });
}

#[test]
fn root_does_not_exist() {
    case_at("missing root, read-only", "missing/deeper", |sb| {
        let mut m = reader(&sb.root).unwrap();
        assert!(m.all_steps().is_empty());
        assert_eq!(m.latest_step(), None);
        assert_eq!(m.best_step(), None);
        expect_err(m.restore(None), ErrorKind::NotFound, &["missing/deeper"]);
        expect_err(m.restore(Some(3)), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.metrics(3), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.step_metadata(3), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.item_metadata(3), ErrorKind::NotFound, &["step 3"]);
        assert!(m.metadata().unwrap().custom_metadata.is_empty());
        assert!(!m
            .save(
                3,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default()
            )
            .unwrap());
        expect_err(
            m.save(
                3,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default().force(true),
            ),
            ErrorKind::ReadOnly,
            &["step 3"],
        );
        expect_err(m.delete(3), ErrorKind::ReadOnly, &["step 3"]);
        m.reload().unwrap();
        m.close().unwrap();
        assert!(
            !sb.base.join("missing").exists(),
            "a read-only open created the root"
        );
    });
    case_at("missing root, create=false", "missing", |sb| {
        let m = writer(&sb.root).create(false).build().unwrap();
        assert!(m.all_steps().is_empty());
        expect_err(
            m.restore(None),
            ErrorKind::NotFound,
            &["no committed steps"],
        );
        drop(m);
        assert!(!sb.root.exists());
    });
}

#[test]
fn unusable_root_locations() {
    case_at("root below a file", "pfile/sub", |sb| {
        fs::write(sb.base.join("pfile"), b"parent is a file").unwrap();
        expect_err(writer(&sb.root).build(), ErrorKind::Storage, &["pfile/sub"]);
        expect_err(reader(&sb.root), ErrorKind::Storage, &["pfile/sub"]);
        assert_eq!(
            fs::read(sb.base.join("pfile")).unwrap(),
            b"parent is a file"
        );
    });
    case("unknown scheme", |_| {
        expect_err(
            CheckpointManager::builder("s4://bucket/run").build(),
            ErrorKind::InvalidArgument,
            &["\"s4\""],
        );
    });
    case("empty root string", |_| {
        expect_err(
            CheckpointManager::builder("").build(),
            ErrorKind::InvalidArgument,
            &["empty"],
        );
    });
    case("relative file URI", |_| {
        expect_err(
            CheckpointManager::builder("file://relative/path").build(),
            ErrorKind::InvalidArgument,
            &["file:///abs/path"],
        );
    });
    case("atomic rename on a store that cannot rename", |_| {
        expect_err(
            CheckpointManager::builder("memory://")
                .atomicity(AtomicityMode::AtomicRename)
                .build(),
            ErrorKind::InvalidConfig,
            &["atomic_rename"],
        );
    });
}
