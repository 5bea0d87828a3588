use isobox_sandbox::*;
fn main() {
    let b = NativeBackend::new(NativeConfig::default()).unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = ExecSpec {
        files: vec![SandboxFile {
            path: "a/hello.txt".into(),
            content: b"hi\n".to_vec(),
            executable: false,
            readonly: false,
        }],
        phases: vec![Phase {
            name: "run".into(),
            argv: args,
            env: vec![],
            stdin: b"input data\n".to_vec(),
            limits: Limits::default(),
            continue_on_failure: false,
            stderr_to_stdout: false,
        }],
        tmpfs_bytes: 64 << 20,
        tmpfs_inodes: 4096,
        collect: None,
    };
    let r = b.execute(&spec);
    match r {
        Ok(r) => {
            for p in &r.phases {
                println!("{:?}", p);
                println!("STDOUT:\n{}", String::from_utf8_lossy(&p.stdout));
                println!("STDERR:\n{}", String::from_utf8_lossy(&p.stderr));
            }
            println!("setup {:?} total {:?}", r.setup_time, r.total_time);
        }
        Err(e) => println!("ERR {e}"),
    }
}
