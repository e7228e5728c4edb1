//! The README's command examples as tests.
//!
//! Every fenced `sh`, `bash`, `shell` or `console` block of README.md with a
//! command that runs `servegate` or `cargo run` is one test,
//! `readme::<section>::line_<N>`, N being the README line of its opening
//! fence. The block runs in a fresh copy of the project (servegate.toml,
//! scenarios/, suites/, prompts/, datasets/), so against the embedded engine,
//! one command after the other, each through `bash -c`, with:
//! - `servegate` on PATH: the binary under test. `cargo run [FLAGS] -- ARGS`
//!   becomes `servegate ARGS` (cargo never runs inside a test); other cargo
//!   commands, such as `cargo nextest run` (which runs these tests), are
//!   printed and not run. `VAR=value` prefixes, comments, pipes and the
//!   like are the shell's business.
//! - `SERVEGATE_*` and `GITHUB_STEP_SUMMARY` removed from the environment,
//!   progress bars and colours off.
//! - Every loopback port the block names (`--port N`, `127.0.0.1:N`,
//!   `localhost:N`) replaced by a free one, so an example may use 8000.
//! - A command ending in `&` started in the background; when it names a
//!   `--port`, the next command waits until that server answers
//!   `GET /v1/models` with 200. Background servers (their whole process
//!   group) are stopped when the block ends, however it ends.
//!
//! Each other command must exit 0 and each earlier stage of a pipeline 0 or
//! 141 (a writer whose reader left may die of SIGPIPE, but must not panic).
//! A failure names the README line and shows the command's stderr tail.
//!
//! Markers are HTML comments (invisible on the rendered page) on the lines
//! right above a block's opening fence:
//! `<!-- readme-test: DIRECTIVE; DIRECTIVE -->`, where DIRECTIVE is one of
//! - `skip (REASON)`: not run, listed as ignored, REASON printed: for what
//!   this machine cannot do (a GPU, a real external server, the network) or
//!   what takes far too long;
//! - `exit N`: every command not sent to the background must exit N;
//!   `exit 0|1` allows either, for a gate verdict that rests on timing noise
//!   (two runs of the same engine on a loaded machine), while an error
//!   (2) still fails;
//! - `env K=V …`: extra environment, e.g. fewer requests per case so that a
//!   run of the whole project stays cheap while every case still runs;
//! - `sim PORT [FLAGS…]`: before the block, start `servegate sim --port PORT
//!   FLAGS` in the background, for examples that talk to a server the reader
//!   is assumed to run.
//!
//! A marker with an unknown directive, one not right above a fence, or one
//! above a block that is not run fails the test `readme::markers`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// What the examples need of the project, copied for each block.
const PROJECT: [&str; 5] = [
    "servegate.toml",
    "scenarios",
    "suites",
    "prompts",
    "datasets",
];
/// Code block languages whose lines are shell commands.
const SHELLS: [&str; 5] = ["sh", "bash", "shell", "zsh", "console"];
/// The longest one command may take; well under nextest's limit for a test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a background server may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // The examples benchmark: one at a time, as in the gate binary.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = fs::read_to_string(&readme).expect("README.md is readable");
    let parsed = parse(&text);
    let mut trials = vec![
        markers_trial(&parsed),
        Trial::test("readme::parser", parser_check),
    ];
    let mut skipped = Vec::new();
    for block in parsed.blocks.into_iter().filter(Block::runs_servegate) {
        let name = format!("readme::{}::line_{}", block.section, block.line);
        match block.directives.skip.clone() {
            Some(reason) => {
                skipped.push((block.line, reason.clone(), name.clone()));
                trials.push(
                    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
                        .with_ignored_flag(true),
                );
            }
            None => trials.push(Trial::test(name, move || run_block(&block))),
        }
    }
    if !args.list {
        for (line, reason, name) in &skipped {
            if args
                .filter
                .as_ref()
                .is_none_or(|f| name.contains(f.as_str()))
            {
                eprintln!("README.md:{line}: skipped: {reason}");
            }
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

// ---------------------------------------------------------------------------
// Reading the README

struct Parsed {
    blocks: Vec<Block>,
    /// Problems with markers, each naming its README line.
    errors: Vec<String>,
}

struct Block {
    /// README line of the opening fence (1-based).
    line: usize,
    /// The nearest heading above, as a test-name segment.
    section: String,
    commands: Vec<Cmd>,
    directives: Directives,
}

struct Cmd {
    /// README line of the command's first line.
    line: usize,
    /// As written; continued lines keep their `\` and newline.
    text: String,
}

#[derive(Default, Debug)]
struct Directives {
    skip: Option<String>,
    /// Allowed exit statuses; empty means 0.
    exit: Vec<i32>,
    env: Vec<(String, String)>,
    sims: Vec<(u16, Vec<String>)>,
}

impl Directives {
    fn allows(&self, status: i32) -> bool {
        if self.exit.is_empty() {
            status == 0
        } else {
            self.exit.contains(&status)
        }
    }
}

impl Block {
    fn runs_servegate(&self) -> bool {
        self.commands
            .iter()
            .any(|c| matches!(c.kind(), Kind::Servegate | Kind::CargoRun { .. }))
    }
}

fn parse(markdown: &str) -> Parsed {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut used_markers = Vec::new();
    let mut section = String::from("top");
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(heading) = trimmed.strip_prefix('#') {
            section = slug(heading.trim_start_matches('#'));
            i += 1;
            continue;
        }
        let Some(info) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = lines[i].len() - trimmed.len();
        let lang = info.split_whitespace().next().unwrap_or("").to_lowercase();
        let open = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let l = lines[i];
            let strip = l.len() - l.trim_start().len();
            body.push((i + 1, &l[strip.min(indent)..]));
            i += 1;
        }
        i += 1; // the closing fence
                // Markers: comment lines right above the fence (blank lines allowed).
        let mut directives = Directives::default();
        let mut marked = false;
        let mut j = open;
        while j > 0 {
            j -= 1;
            let above = lines[j].trim();
            if above.is_empty() {
                continue;
            }
            if !is_marker(above) {
                break;
            }
            used_markers.push(j + 1);
            marked = true;
            if let Err(e) = directives.add(above) {
                errors.push(format!("README.md:{}: {e}", j + 1));
            }
        }
        if !SHELLS.contains(&lang.as_str()) {
            if marked {
                errors.push(format!(
                    "README.md:{}: marker above a `{lang}` block, which is never run",
                    open + 1
                ));
            }
            continue;
        }
        let block = Block {
            line: open + 1,
            section: section.clone(),
            commands: commands(&body, lang == "console"),
            directives,
        };
        if marked && !block.runs_servegate() {
            errors.push(format!(
                "README.md:{}: marker above a block with no `servegate` or `cargo run` command, \
                 which is never run",
                block.line
            ));
        }
        blocks.push(block);
    }
    for (n, l) in lines.iter().enumerate() {
        if is_marker(l.trim()) && !used_markers.contains(&(n + 1)) {
            errors.push(format!(
                "README.md:{}: marker not right above a code block",
                n + 1
            ));
        }
    }
    Parsed { blocks, errors }
}

fn is_marker(line: &str) -> bool {
    line.starts_with("<!--") && line.contains("readme-test:")
}

impl Directives {
    fn add(&mut self, marker: &str) -> Result<(), String> {
        let inner = marker
            .strip_suffix("-->")
            .ok_or("a marker must end with `-->` on its own line")?;
        let inner = &inner[inner.find("readme-test:").expect("checked") + "readme-test:".len()..];
        for directive in split_directives(inner) {
            let (word, rest) = directive
                .split_once(char::is_whitespace)
                .map(|(w, r)| (w, r.trim()))
                .unwrap_or((directive, ""));
            match word {
                "skip" => {
                    let reason = rest.trim_start_matches('(').trim_end_matches(')').trim();
                    if reason.is_empty() {
                        return Err("`skip` needs a reason: `skip (needs a GPU)`".into());
                    }
                    self.skip = Some(reason.to_string());
                }
                "exit" => {
                    self.exit = rest
                        .split('|')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()
                        .map_err(|_| {
                            format!("`exit` needs statuses like `1` or `0|1`, not `{rest}`")
                        })?;
                }
                "env" => {
                    for pair in rest.split_whitespace() {
                        let (k, v) = pair
                            .split_once('=')
                            .ok_or_else(|| format!("`env` takes K=V pairs, not `{pair}`"))?;
                        self.env.push((k.to_string(), v.to_string()));
                    }
                }
                "sim" => {
                    let mut words = rest.split_whitespace();
                    let port = words
                        .next()
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| format!("`sim` needs a port first, not `{rest}`"))?;
                    self.sims.push((port, words.map(str::to_string).collect()));
                }
                other => {
                    return Err(format!(
                        "unknown directive `{other}` (known: skip, exit, env, sim)"
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Directives split at `;`, except inside parentheses (a skip reason may hold one).
fn split_directives(inner: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ';' if depth == 0 => {
                out.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(inner[start..].trim());
    out.retain(|d| !d.is_empty());
    out
}

/// A heading as a test-name segment: `servegate eval` → `servegate_eval`.
fn slug(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let mut out = out.trim_end_matches('_').to_string();
    while out.len() > 40 {
        match out.rfind('_') {
            Some(cut) => out.truncate(cut),
            None => out.truncate(40),
        }
    }
    out
}

/// The commands of a block: one per line, `\`-continued lines joined, blank
/// and comment lines dropped; in a console block only `$ ` lines (the rest
/// is output).
fn commands(body: &[(usize, &str)], console: bool) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    let mut continued = false;
    for &(line, l) in body {
        if continued {
            let cmd = out.last_mut().expect("a command continues");
            cmd.text.push('\n');
            cmd.text.push_str(l);
        } else {
            let l = if console {
                match l.strip_prefix("$ ") {
                    Some(rest) => rest,
                    None => continue,
                }
            } else {
                l
            };
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            out.push(Cmd {
                line,
                text: l.to_string(),
            });
        }
        continued = l.ends_with('\\');
    }
    out
}

#[derive(Debug, PartialEq)]
enum Kind {
    Servegate,
    /// `cargo run`: `start..end` of the text is `cargo run … --`.
    CargoRun {
        start: usize,
        end: usize,
    },
    /// Another cargo command.
    Cargo,
    Other,
}

impl Cmd {
    /// The text with comments blanked out, byte for byte.
    fn code(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let (mut single, mut double, mut comment) = (false, false, false);
        let mut prev = ' ';
        for c in self.text.chars() {
            if c == '\n' {
                comment = false;
            } else if !comment && !single && !double && c == '#' && prev.is_whitespace() {
                comment = true;
            } else if !comment && c == '\'' && !double {
                single = !single;
            } else if !comment && c == '"' && !single {
                double = !double;
            }
            if comment {
                out.extend(std::iter::repeat_n(' ', c.len_utf8()));
            } else {
                out.push(c);
            }
            prev = c;
        }
        out
    }

    /// Words of the code and their byte ranges (a `\` ending a line is space).
    fn words(&self) -> Vec<(usize, usize)> {
        let code = self.code().replace("\\\n", "  ");
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in code.char_indices() {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, code.len()));
        }
        out
    }

    fn kind(&self) -> Kind {
        let spans = self.words();
        let w: Vec<&str> = spans.iter().map(|&(s, e)| &self.text[s..e]).collect();
        let mut i = 0;
        while w.get(i).is_some_and(|x| is_assignment(x)) {
            i += 1;
        }
        if w.get(i) == Some(&"taskset") {
            i += 1;
            loop {
                match w.get(i) {
                    Some(&"-c") | Some(&"--cpu-list") => {
                        i += 2;
                        break;
                    }
                    Some(x) if x.starts_with('-') => i += 1,
                    Some(_) => {
                        i += 1; // a CPU mask
                        break;
                    }
                    None => break,
                }
            }
        }
        match (w.get(i), w.get(i + 1)) {
            (Some(&"servegate"), _) => Kind::Servegate,
            (Some(&"cargo"), Some(&"run")) => {
                // Up to `--`, or else up to the end of the command (no arguments).
                let rest = &w[i + 2..];
                let stop = ["|", "&", "&&", "||", ";", ">", ">>"];
                let end = match rest.iter().position(|x| *x == "--") {
                    Some(k) => spans[i + 2 + k].1,
                    None => {
                        let k = rest
                            .iter()
                            .position(|x| stop.contains(x))
                            .unwrap_or(rest.len());
                        spans[i + 1 + k].1
                    }
                };
                Kind::CargoRun {
                    start: spans[i].0,
                    end,
                }
            }
            (Some(&"cargo"), _) => Kind::Cargo,
            _ => Kind::Other,
        }
    }

    /// Ends in `&`: to be started in the background.
    fn background(&self) -> bool {
        let code = self.code();
        let code = code.trim_end();
        code.ends_with('&') && !code.ends_with("&&")
    }

    /// What bash runs: `cargo run … --` as `servegate`, without a final `&`.
    fn script(&self) -> String {
        let mut text = match self.kind() {
            Kind::CargoRun { start, end } => {
                format!("{}servegate{}", &self.text[..start], &self.text[end..])
            }
            _ => self.text.clone(),
        };
        if self.background() {
            let amp = Cmd {
                line: 0,
                text: text.clone(),
            }
            .code()
            .rfind('&')
            .expect("ends in &");
            text.replace_range(amp..amp + 1, "");
        }
        text
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            && !k.starts_with(|c: char| c.is_ascii_digit())
    })
}

// ---------------------------------------------------------------------------
// Ports

const PORT_PREFIXES: [&str; 4] = ["--port ", "--port=", "127.0.0.1:", "localhost:"];

/// Loopback ports named in `text`, in order of appearance.
fn ports_in(text: &str, prefixes: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for (i, _) in text.char_indices() {
        for p in prefixes {
            if let Some(rest) = text[i..].strip_prefix(p) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    if !out.contains(&port) {
                        out.push(port);
                    }
                }
            }
        }
    }
    out
}

/// `text` with each port of `map` replaced where a prefix names it.
fn remap(text: &str, map: &[(u16, u16)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'outer: while i < text.len() {
        for p in PORT_PREFIXES {
            if let Some(rest) = text[i..].strip_prefix(p) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let found = digits.parse::<u16>().ok();
                if let Some(&(_, new)) = map.iter().find(|(old, _)| Some(*old) == found) {
                    out.push_str(p);
                    out.push_str(&new.to_string());
                    i += p.len() + digits.len();
                    continue 'outer;
                }
            }
        }
        let c = text[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Distinct free loopback ports, one per port of `ports`.
fn free_ports(ports: &[u16]) -> Vec<(u16, u16)> {
    // Held together, so that no port is handed out twice.
    let listeners: Vec<TcpListener> = ports
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    ports
        .iter()
        .zip(&listeners)
        .map(|(&old, l)| (old, l.local_addr().expect("bound").port()))
        .collect()
}

// ---------------------------------------------------------------------------
// Running a block

/// Background processes of a block, each the leader of its process group;
/// all are stopped when this is dropped, also when the test panics.
#[derive(Default)]
struct Background(Vec<(Child, String, PathBuf)>);

impl Drop for Background {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.0 {
            stop(child);
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL after 5 s or for whatever
/// of the group is left once the leader is gone.
fn stop(child: &mut Child) {
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

struct Env {
    project: PathBuf,
    logs: PathBuf,
    path: std::ffi::OsString,
    extra: Vec<(String, String)>,
}

impl Env {
    /// A process in `project`, in its own process group, output to files.
    fn command(&self, program: &Path, log: &str) -> (Command, PathBuf, PathBuf) {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.project)
            .process_group(0)
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SERVEGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("GITHUB_STEP_SUMMARY")
            .env("PATH", &self.path)
            .env("SERVEGATE_NO_PROGRESS", "1")
            .env("NO_COLOR", "1");
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        let out = self.logs.join(format!("{log}.out"));
        let err = self.logs.join(format!("{log}.err"));
        cmd.stdout(fs::File::create(&out).expect("log file"))
            .stderr(fs::File::create(&err).expect("log file"));
        (cmd, out, err)
    }
}

fn run_block(block: &Block) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let project = tmp.path().join("project");
    let bin = tmp.path().join("bin");
    let logs = tmp.path().join("logs");
    for dir in [&project, &bin, &logs] {
        fs::create_dir_all(dir).expect("temporary folders");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for item in PROJECT {
        copy(&repo.join(item), &project.join(item));
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_servegate"));
    std::os::unix::fs::symlink(exe, bin.join("servegate")).expect("symlink");
    let mut path = bin.clone().into_os_string();
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    let env = Env {
        project,
        logs,
        path,
        extra: block.directives.env.clone(),
    };

    let mut named: Vec<u16> = block.directives.sims.iter().map(|(p, _)| *p).collect();
    for cmd in &block.commands {
        named.extend(ports_in(&cmd.code(), &PORT_PREFIXES));
    }
    named.sort_unstable();
    named.dedup();
    let ports = free_ports(&named);
    let new_port = |old: u16| ports.iter().find(|(o, _)| *o == old).expect("mapped").1;

    for (old, new) in &ports {
        println!("port {old} is {new} in this run");
    }
    let mut background = Background::default();
    let mut failures = Vec::new();
    for (n, (port, flags)) in block.directives.sims.iter().enumerate() {
        let port = new_port(*port);
        let (mut cmd, _, err) = env.command(exe, &format!("sim-{n}"));
        cmd.args(["sim", "--port", &port.to_string()]).args(flags);
        let what = format!("servegate sim --port {port} {}", flags.join(" "))
            .trim_end()
            .to_string();
        println!("README.md:{}: (marker) $ {what} &", block.line);
        let child = cmd.spawn().expect("servegate starts");
        background.0.push((child, what, err));
        let last = background.0.last_mut().expect("just pushed");
        if let Err(e) = wait_ready(port, &mut last.0, &last.2) {
            return Err(format!("README.md:{}: marker `sim`: {e}", block.line).into());
        }
    }

    for (n, cmd) in block.commands.iter().enumerate() {
        println!("README.md:{}: $ {}", cmd.line, cmd.text);
        if cmd.kind() == Kind::Cargo {
            println!("  not run: a cargo command other than `cargo run`");
            continue;
        }
        let script = remap(&cmd.script(), &ports);
        if cmd.background() {
            let (mut c, _, err) = env.command(Path::new("bash"), &format!("cmd-{n}"));
            let child = c.arg("-c").arg(&script).spawn().expect("bash starts");
            background.0.push((child, script.clone(), err));
            let last = background.0.last_mut().expect("just pushed");
            for port in ports_in(&cmd.code(), &["--port ", "--port="]) {
                if let Err(e) = wait_ready(new_port(port), &mut last.0, &last.2) {
                    failures.push(format!(
                        "README.md:{}: `{}`: {e}",
                        cmd.line,
                        first_line(cmd)
                    ));
                }
            }
            continue;
        }
        let status_file = env.logs.join(format!("cmd-{n}.status"));
        let wrapped = format!(
            "{script}\n__readme_status=(\"${{PIPESTATUS[@]}}\")\n\
             echo \"${{__readme_status[*]}}\" > '{}'\nexit \"${{__readme_status[-1]}}\"\n",
            status_file.display()
        );
        let (mut c, out, err) = env.command(Path::new("bash"), &format!("cmd-{n}"));
        let started = Instant::now();
        let mut child = c.arg("-c").arg(&wrapped).spawn().expect("bash starts");
        let status = wait_bounded(&mut child);
        let secs = started.elapsed().as_secs_f64();
        let stages: Vec<i32> = fs::read_to_string(&status_file)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        let problem = match (status, stages.split_last()) {
            (None, _) => Some(format!("did not finish in {} s", COMMAND_TIMEOUT.as_secs())),
            (Some(s), _) if s.code().is_none() => Some(format!("was killed by {s}")),
            (Some(_), Some((last, earlier))) => {
                if let Some(bad) = earlier.iter().find(|s| **s != 0 && **s != 141) {
                    Some(format!(
                        "has a pipeline stage that exited with {bad} (statuses {stages:?})"
                    ))
                } else if !block.directives.allows(*last) {
                    Some(format!(
                        "exited with {last}, expected {:?}",
                        block.directives.exit
                    ))
                } else {
                    None
                }
            }
            (Some(s), None) => Some(format!("ended ({s}) before its status was recorded")),
        };
        println!(
            "  {} in {secs:.1} s",
            status.map_or("timed out".into(), |s| s.to_string())
        );
        if let Some(problem) = problem {
            failures.push(format!(
                "README.md:{}: `{}` {problem}\n--- stderr (last 30 lines) ---\n{}\
                 --- stdout (last 15 lines) ---\n{}",
                cmd.line,
                first_line(cmd),
                tail(&err, 30),
                tail(&out, 15)
            ));
        }
    }
    drop(background);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n").into())
    }
}

fn first_line(cmd: &Cmd) -> String {
    let first = cmd.text.lines().next().unwrap_or("");
    if cmd.text.contains('\n') {
        format!("{} …", first.trim_end_matches('\\').trim_end())
    } else {
        first.to_string()
    }
}

/// Waits for the child, killing its group after [`COMMAND_TIMEOUT`].
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Nothing of a foreground command may linger.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            return Some(status);
        }
        if Instant::now() > deadline {
            stop(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `GET /v1/models` on the port until it answers 200.
fn wait_ready(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no connection");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "exited ({status}) before serving port {port}\n--- stderr ---\n{}",
                tail(log, 30)
            ));
        }
        match probe(port) {
            Ok(line) if line.split_whitespace().nth(1) == Some("200") => return Ok(()),
            Ok(line) => last = line,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "port {port} not ready after {} s (last: {last})\n--- stderr ---\n{}",
        READY_TIMEOUT.as_secs(),
        tail(log, 30)
    ))
}

/// The status line of `GET /v1/models`.
fn probe(port: u16) -> std::io::Result<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

fn tail(file: &Path, lines: usize) -> String {
    let text = fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for l in &all[all.len().saturating_sub(lines)..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).expect("create folder");
        for entry in fs::read_dir(from).expect("read folder") {
            let entry = entry.expect("folder entry");
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

// ---------------------------------------------------------------------------
// Checks of the convention itself

fn markers_trial(parsed: &Parsed) -> Trial {
    let mut errors = parsed.errors.clone();
    if !parsed.blocks.iter().any(Block::runs_servegate) {
        errors.push("README.md: no block runs servegate: is the parser broken?".into());
    }
    Trial::test("readme::markers", move || {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n").into())
        }
    })
}

/// The parser on a small README, so that a change to it cannot quietly stop
/// running the examples.
fn parser_check() -> Result<(), Failed> {
    let md = "# t\n## Two `things`\n\n<!-- readme-test: exit 0|1; env A=1 B=2 -->\n\n```sh\n\
              # a comment\n\
              cargo run --release -- run --save-detailed  # the job\n\
              X=1 servegate eval --url http://127.0.0.1:8000 \\\n  --port 8000 | head\n\
              cargo nextest run -E 'test(/a#b/)'\n\
              taskset -c 1 servegate sim --port 8100 &\n\
              ```\n\n```console\n$ cargo run\noutput servegate\n```\n\
              <!-- readme-test: sim 8000 -q; nope; skip (a; b) -->\n```toml\nx = 1\n```\n";
    let parsed = parse(md);
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(Failed::from(what)) };
    check(parsed.blocks.len() == 2, "two shell blocks")?;
    let b = &parsed.blocks[0];
    check(b.line == 6 && b.section == "two_things", "line and section")?;
    check(
        b.directives.exit == [0, 1]
            && b.directives.allows(1)
            && !b.directives.allows(2)
            && b.directives.env.len() == 2,
        "directives",
    )?;
    let c = &b.commands;
    check(c.len() == 4, "comment dropped, continuation joined")?;
    check(
        c[0].line == 8 && c[1].line == 9 && c[2].line == 11,
        "command lines",
    )?;
    check(
        c[0].script() == "servegate run --save-detailed  # the job",
        "cargo run rewritten",
    )?;
    check(
        c[1].kind() == Kind::Servegate && !c[1].background(),
        "env prefix",
    )?;
    check(
        c[2].kind() == Kind::Cargo,
        "other cargo commands are not run",
    )?;
    check(
        c[3].kind() == Kind::Servegate && c[3].background(),
        "taskset and &",
    )?;
    check(
        c[3].script().trim_end() == "taskset -c 1 servegate sim --port 8100",
        "& removed",
    )?;
    let remapped = remap(&c[1].text, &[(8000, 9001)]);
    check(
        remapped.contains("127.0.0.1:9001 ") && remapped.contains("--port 9001 "),
        "ports remapped",
    )?;
    check(
        ports_in(&c[3].code(), &PORT_PREFIXES) == [8100],
        "ports found",
    )?;
    let console = &parsed.blocks[1].commands;
    check(
        console.len() == 1 && console[0].script() == "servegate",
        "console block",
    )?;
    check(
        parsed.errors.len() == 2
            && parsed
                .errors
                .iter()
                .any(|e| e.contains("unknown directive `nope`"))
            && parsed.errors.iter().any(|e| e.contains("`toml` block")),
        "marker errors",
    )
}
