use super::*;

const CLOUDS: &str = "\
clouds:
  prod:
    auth_type: password
    auth:
      auth_url: https://keystone.example.net:5000
      username: file-user
      password: file-password
      user_domain_name: Default
      project_name: file-project
      project_domain_name: Default
    region_name: RegionOne
    interface: internal
    identity_api_version: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example.net:5000/v3
      application_credential_id: 6f1b0a2c
  lab:
    auth_type: token
    auth:
      token: admin:admin
    compute_endpoint_override: http://127.0.0.1:8774/v2.1
    volumev3_endpoint_override: http://127.0.0.1:8776/v3
    verify: false
";

const SECURE: &str = "\
clouds:
  prod:
    auth:
      password: secure-password
  appcred:
    auth:
      application_credential_secret: secure-secret
";

struct Files {
    _dir: tempfile::TempDir,
    paths: SearchPaths,
}

fn files(clouds: Option<&str>, secure: Option<&str>) -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let clouds_path = dir.path().join("clouds.yaml");
    let secure_path = dir.path().join("secure.yaml");
    if let Some(text) = clouds {
        std::fs::write(&clouds_path, text).expect("write clouds.yaml");
    }
    if let Some(text) = secure {
        std::fs::write(&secure_path, text).expect("write secure.yaml");
    }
    Files {
        paths: SearchPaths {
            clouds: vec![clouds_path],
            secure: vec![secure_path],
        },
        _dir: dir,
    }
}

fn env(pairs: &[(&str, &str)]) -> Environment {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn flags(cloud: Option<&str>, pairs: &[(&str, &str)]) -> Overrides {
    Overrides {
        cloud: cloud.map(str::to_string),
        values: pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..Overrides::default()
    }
}

/// Which layer wins for the user name, project and password: flags over
/// `OS_*` over secure.yaml over clouds.yaml, and `OS_*` alone without a
/// named cloud.
#[test]
fn precedence_table() {
    struct Case {
        name: &'static str,
        env: Vec<(&'static str, &'static str)>,
        flags: Overrides,
        username: &'static str,
        project: &'static str,
        password: &'static str,
        cloud: &'static str,
    }
    let cases = [
        Case {
            name: "clouds.yaml with secure.yaml over it",
            env: vec![("OS_CLOUD", "prod")],
            flags: flags(None, &[]),
            username: "file-user",
            project: "file-project",
            password: "secure-password",
            cloud: "prod",
        },
        Case {
            name: "OS_* over secure.yaml and clouds.yaml",
            env: vec![
                ("OS_CLOUD", "prod"),
                ("OS_USERNAME", "env-user"),
                ("OS_PASSWORD", "env-password"),
            ],
            flags: flags(None, &[]),
            username: "env-user",
            project: "file-project",
            password: "env-password",
            cloud: "prod",
        },
        Case {
            name: "flags over OS_*",
            env: vec![("OS_CLOUD", "prod"), ("OS_USERNAME", "env-user")],
            flags: flags(
                None,
                &[("username", "flag-user"), ("project_name", "flag-project")],
            ),
            username: "flag-user",
            project: "flag-project",
            password: "secure-password",
            cloud: "prod",
        },
        Case {
            name: "--os-cloud over OS_CLOUD",
            env: vec![("OS_CLOUD", "appcred"), ("OS_PROJECT_NAME", "env-project")],
            flags: flags(Some("prod"), &[]),
            username: "file-user",
            project: "env-project",
            password: "secure-password",
            cloud: "prod",
        },
        Case {
            name: "OS_* alone without a named cloud",
            env: vec![
                ("OS_AUTH_URL", "https://keystone.example.net:5000/v3"),
                ("OS_USERNAME", "env-user"),
                ("OS_PASSWORD", "env-password"),
                ("OS_TENANT_NAME", "legacy-project"),
            ],
            flags: flags(None, &[]),
            username: "env-user",
            project: "legacy-project",
            password: "env-password",
            cloud: "envvars",
        },
        Case {
            name: "flags over OS_* alone",
            env: vec![
                ("OS_AUTH_URL", "https://keystone.example.net:5000/v3"),
                ("OS_USERNAME", "env-user"),
                ("OS_PASSWORD", "env-password"),
                ("OS_PROJECT_NAME", "env-project"),
            ],
            flags: flags(None, &[("password", "flag-password")]),
            username: "env-user",
            project: "env-project",
            password: "flag-password",
            cloud: "envvars",
        },
    ];
    let files = files(Some(CLOUDS), Some(SECURE));
    for case in cases {
        let config = load(&env(&case.env), &files.paths, &case.flags)
            .unwrap_or_else(|err| panic!("{}: {err}", case.name));
        assert_eq!(config.name, case.cloud, "{}: cloud", case.name);
        assert_eq!(
            config.username.as_deref(),
            Some(case.username),
            "{}: username",
            case.name
        );
        assert_eq!(
            config.project_name.as_deref(),
            Some(case.project),
            "{}: project",
            case.name
        );
        assert_eq!(
            config.password.as_ref().map(Secret::expose),
            Some(case.password),
            "{}: password",
            case.name
        );
    }
}

#[test]
fn named_cloud_keys_resolved() {
    let files = files(Some(CLOUDS), Some(SECURE));
    let config = load(
        &env(&[("OS_CLOUD", "prod")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect("prod loads");
    assert_eq!(config.auth_type, AuthType::Password);
    assert_eq!(
        config.auth_url.as_deref(),
        Some("https://keystone.example.net:5000/v3")
    );
    assert_eq!(config.interface, "internal");
    assert_eq!(config.region_name.as_deref(), Some("RegionOne"));
    assert_eq!(config.sources.len(), 2);
}

#[test]
fn region_variable_overrides_cloud() {
    let files = files(Some(CLOUDS), Some(SECURE));
    let config = load(
        &env(&[("OS_CLOUD", "prod"), ("OS_REGION_NAME", "RegionTwo")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect("prod loads");
    assert_eq!(config.region_name.as_deref(), Some("RegionTwo"));
    let config = load(
        &env(&[("OS_CLOUD", "prod"), ("OS_REGION_NAME", "RegionTwo")]),
        &files.paths,
        &flags(None, &[("region_name", "RegionThree")]),
    )
    .expect("prod loads");
    assert_eq!(config.region_name.as_deref(), Some("RegionThree"));
}

#[test]
fn application_credential_from_secure_file() {
    let files = files(Some(CLOUDS), Some(SECURE));
    let config = load(&env(&[]), &files.paths, &flags(Some("appcred"), &[])).expect("loads");
    assert_eq!(config.auth_type, AuthType::ApplicationCredential);
    assert_eq!(
        config
            .application_credential_secret
            .as_ref()
            .map(Secret::expose),
        Some("secure-secret")
    );
}

#[test]
fn token_cloud_without_keystone() {
    let files = files(Some(CLOUDS), None);
    let config = load(&env(&[]), &files.paths, &flags(Some("lab"), &[])).expect("loads");
    assert_eq!(config.auth_type, AuthType::Token);
    assert!(config.auth_url.is_none());
    assert!(!config.verify);
    assert_eq!(
        config.endpoint_overrides.get("compute").map(String::as_str),
        Some("http://127.0.0.1:8774/v2.1")
    );
    assert_eq!(
        config
            .endpoint_overrides
            .get("block-storage")
            .map(String::as_str),
        Some("http://127.0.0.1:8776/v3")
    );
}

#[test]
fn unknown_cloud_names_the_choices() {
    let files = files(Some(CLOUDS), None);
    let err = load(
        &env(&[("OS_CLOUD", "nope")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect_err("unknown cloud");
    let message = err.to_string();
    assert!(message.contains("\"nope\""), "{message}");
    assert!(message.contains("appcred, lab, prod"), "{message}");
}

#[test]
fn missing_password_names_the_fix() {
    let no_password = CLOUDS.replace("      password: file-password\n", "");
    let files = files(Some(&no_password), None);
    let err = load(
        &env(&[("OS_CLOUD", "prod")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect_err("no password");
    assert!(err.to_string().contains("OS_PASSWORD"), "{err}");
}

#[test]
fn nothing_configured_is_an_error() {
    let files = files(None, None);
    let err = load(
        &env(&[("HOME", "/nonexistent")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect_err("no cloud");
    assert!(matches!(err, ConfigError::NoCloud { .. }), "{err}");
    assert!(err.to_string().contains("--os-cloud or OS_CLOUD"), "{err}");
}

#[test]
fn several_clouds_without_a_name_are_listed() {
    let files = files(Some(CLOUDS), None);
    let err = load(&env(&[]), &files.paths, &flags(None, &[])).expect_err("no cloud named");
    assert!(matches!(err, ConfigError::SeveralClouds { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("(appcred, lab, prod)"), "{message}");
    assert!(message.contains("clouds.yaml"), "{message}");
    assert!(message.contains("--os-cloud or OS_CLOUD"), "{message}");
}

#[test]
fn controller_errors_name_its_setting() {
    let files = files(Some(CLOUDS), None);
    let controller = |cloud: Option<&str>| Overrides {
        cloud: cloud.map(str::to_string),
        named_by: CloudSetting::ControllerConfig,
        ..Overrides::default()
    };
    let several = load(&env(&[]), &files.paths, &controller(None)).expect_err("several");
    let unknown = load(&env(&[]), &files.paths, &controller(Some("nope"))).expect_err("unknown");
    let empty = self::files(None, None);
    let none = load(&env(&[]), &empty.paths, &controller(None)).expect_err("none");
    for err in [several, unknown, none] {
        let message = err.to_string();
        assert!(!message.contains("--os-cloud"), "{message}");
        assert!(
            message.contains("`cloud = \"NAME\"` in the [openstack] table of controller.toml"),
            "{message}"
        );
    }
}

#[test]
fn only_cloud_is_the_default() {
    let single = "clouds:\n  only:\n    auth:\n      auth_url: http://127.0.0.1:5000\n      \
                  username: u\n      password: p\n";
    let files = files(Some(single), None);
    let config = load(&env(&[]), &files.paths, &flags(None, &[])).expect("loads");
    assert_eq!(config.name, "only");
    assert_eq!(config.auth_url.as_deref(), Some("http://127.0.0.1:5000/v3"));
}

#[test]
fn numbers_accepted_as_text() {
    let numbers =
        "clouds:\n  n:\n    identity_api_version: 3\n    api_timeout: 7\n    auth:\n      \
                   auth_url: http://127.0.0.1:5000/v3\n      user-id: 42\n      password: 1234\n";
    let files = files(Some(numbers), None);
    let config = load(&env(&[("OS_CLOUD", "n")]), &files.paths, &flags(None, &[])).expect("loads");
    assert_eq!(config.user_id.as_deref(), Some("42"));
    assert_eq!(config.password.as_ref().map(Secret::expose), Some("1234"));
    assert_eq!(config.api_timeout, Some(Duration::from_secs(7)));
}

#[test]
fn debug_output_hides_secrets() {
    let files = files(Some(CLOUDS), Some(SECURE));
    let config = load(
        &env(&[("OS_CLOUD", "prod")]),
        &files.paths,
        &flags(None, &[]),
    )
    .expect("loads");
    let shown = format!("{config:?}");
    assert!(!shown.contains("secure-password"), "{shown}");
}

#[test]
fn search_order_is_standard() {
    let env = env(&[
        ("HOME", "/home/op"),
        ("OS_CLIENT_CONFIG_FILE", "/tmp/mine.yaml"),
    ]);
    let paths = SearchPaths::standard(&env, Path::new("/work"));
    let shown: Vec<String> = paths
        .clouds
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    assert_eq!(shown[0], "/tmp/mine.yaml");
    assert_eq!(shown[1], "/work/clouds.yaml");
    assert_eq!(shown[4], "/home/op/.config/openstack/clouds.yaml");
    assert!(shown.contains(&"/etc/xdg/openstack/clouds.yaml".to_string()));
    assert_eq!(
        shown.last().map(String::as_str),
        Some("/etc/openstack/clouds.json")
    );
    assert!(paths.secure[0].ends_with("secure.yaml"));
}
