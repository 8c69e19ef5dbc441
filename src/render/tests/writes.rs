//! Writing: atomic writes, mount points, the render state and change detection.

use std::path::Path;

use super::*;

#[test]
fn renderer_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Renderer>();
    shareable::<RenderState>();
}

#[test]
fn rendered_prints_files_then_the_process() {
    let mut r = rendered(Path::new("/x"), "a=1", "");
    r.cwd = Some("/x".into());
    r.env.insert("K".into(), "v".into());
    assert_eq!(
        r.to_string(),
        "==> /x/conf/zoo.cfg (0640, always) <==\na=1\n\
         ==> /x/conf/zoo.cfg.dynamic (0644, if-absent) <==\n\
         ==> process <==\ncommand: [\"zk\"]\ncwd: /x\nenv: K=v\n"
    );
}

#[test]
fn apply_detects_changes_against_its_own_last_render_not_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let zoo = tmp.path().join("conf/zoo.cfg");
    let dynamic = tmp.path().join("conf/zoo.cfg.dynamic");

    let mut st = RenderState::open(&state_dir, "u-1").unwrap();
    assert!(
        st.apply(&rendered(tmp.path(), "a", "servers=1")).unwrap(),
        "first render"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "a");
    assert_eq!(mode(&zoo), 0o640);
    assert_eq!(std::fs::read_to_string(&dynamic).unwrap(), "servers=1");

    // The process rewrites its dynamic file, someone edits zoo.cfg: not ochopod's concern.
    std::fs::write(&dynamic, "servers=1,2 (by zk)").unwrap();
    std::fs::write(&zoo, "edited").unwrap();
    let mut st = RenderState::open(&state_dir, "u-1").unwrap();
    assert!(
        !st.apply(&rendered(tmp.path(), "a", "servers=1")).unwrap(),
        "same render"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "edited");

    // A new render of the if-absent file alone changes nothing and keeps the process's file.
    assert!(!st.apply(&rendered(tmp.path(), "a", "servers=1,2,3")).unwrap());
    assert_eq!(std::fs::read_to_string(&dynamic).unwrap(), "servers=1,2 (by zk)");

    // Missing on disk though unchanged: written again, still "unchanged".
    std::fs::remove_file(&zoo).unwrap();
    std::fs::remove_file(&dynamic).unwrap();
    assert!(!st.apply(&rendered(tmp.path(), "a", "servers=1,2,3")).unwrap());
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(&dynamic).unwrap(), "servers=1,2,3");

    assert!(
        st.apply(&rendered(tmp.path(), "b", "servers=1,2,3")).unwrap(),
        "content"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "b");
    let mut r = rendered(tmp.path(), "b", "servers=1,2,3");
    r.env.insert("X".into(), "1".into());
    assert!(st.differs(&r));
    assert!(st.apply(&r).unwrap(), "env");
    r.files[0].mode = 0o600;
    assert!(st.apply(&r).unwrap(), "mode");
    assert_eq!(mode(&zoo), 0o600);
    assert_eq!(st.last_digest(), Some(r.digest()));

    // Another pod's state is its own.
    let mut other = RenderState::open(&state_dir, "u-2").unwrap();
    assert!(other.apply(&r).unwrap());
    assert!(RenderState::open(&state_dir, "../x").is_err());
}

#[test]
fn digest_follows_content() {
    let d = Path::new("/x");
    assert_eq!(rendered(d, "a", "b").digest(), rendered(d, "a", "b").digest());
    assert_ne!(rendered(d, "a", "b").digest(), rendered(d, "a", "c").digest());
    assert_eq!(rendered(d, "a", "b").digest().len(), 64);
}

#[test]
fn write_atomic_sets_the_mode_and_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/file");
    write_atomic(&dest, b"one", 0o751).unwrap();
    assert_eq!(mode(&dest), 0o751);
    write_atomic(&dest, b"two", 0o600).unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "two");
    assert_eq!(mode(&dest), 0o600);
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // A folder in the way fails with the path named, and leaves nothing behind.
    let e = write_atomic(tmp.path().join("a/b").as_path(), b"x", 0o644).unwrap_err();
    assert!(e.to_string().contains("a/b"), "{e}");
    assert_eq!(std::fs::read_dir(tmp.path().join("a")).unwrap().count(), 1);
}

/// Bind-mounts a file over another inside a user+mount namespace (`unshare -rm`, no privileges
/// needed where user namespaces are enabled) by re-running this very test there: rename onto a
/// mount point fails with EBUSY, so the write must happen in place, through to the mounted file.
#[test]
fn write_atomic_writes_in_place_over_a_mount_point() {
    const NAME: &str = "render::tests::writes::write_atomic_writes_in_place_over_a_mount_point";
    if std::env::var_os("OCHOPOD_TEST_IN_USERNS").is_none() {
        let out = std::process::Command::new("unshare")
            .arg("-rm")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("OCHOPOD_TEST_IN_USERNS", "1")
            .output()
            .expect("unshare (util-linux) runs this test in a user namespace");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "in `unshare -rm` (user namespaces must be enabled): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    use nix::mount::{mount, MsFlags};
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("configmap");
    let dest = tmp.path().join("conf/zoo.cfg");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&source, "old").unwrap();
    std::fs::write(&dest, "").unwrap();
    mount(Some(&source), &dest, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");

    write_atomic(&dest, b"new", 0o640).unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
    assert_eq!(
        std::fs::read_to_string(&source).unwrap(),
        "new",
        "written through the mount"
    );
    assert_eq!(mode(&dest), 0o640);
    let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temp file left behind");
}

#[test]
fn an_unreadable_state_file_counts_as_no_render() {
    let tmp = tempfile::tempdir().unwrap();
    let r = rendered(tmp.path(), "a", "b");
    let mut st = RenderState::open(tmp.path(), "u").unwrap();
    assert!(st.apply(&r).unwrap());
    assert!(!RenderState::open(tmp.path(), "u").unwrap().differs(&r));
    std::fs::write(tmp.path().join("render-u.json"), "{torn").unwrap();
    let mut st = RenderState::open(tmp.path(), "u").unwrap();
    assert_eq!(st.last_digest(), None);
    assert!(
        st.apply(&r).unwrap(),
        "changed: ochopod cannot know what it rendered"
    );
}
