//! Running commands in a container, and files in and out of it through the archive API.

use super::{describe, Docker, ExecOutput};
use crate::error;
use anyhow::Result;
use bollard::container::{DownloadFromContainerOptions, LogOutput, UploadToContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// One answer to a command run by `exec_answering`.
pub struct Reply {
    /// The line the command prints when it waits for its answer
    pub prompt: &'static str,
    /// Fires when it printed it
    pub prompted: oneshot::Sender<()>,
    /// The line to answer with (dropped: no answer, the input is closed)
    pub answer: oneshot::Receiver<String>,
}

impl Docker {
    /// Runs `cmd` in a running container and waits for it, bounded by `limit`.
    pub async fn exec(&self, container: &str, cmd: &[&str], limit: Duration) -> Result<ExecOutput> {
        self.exec_answering(container, cmd, limit, None).await
    }

    /// `exec`, answering the command once: when it prints `reply.prompt` on a line of its
    /// own, `reply.prompted` fires, and the line `reply.answer` brings is written to its
    /// stdin, which is then closed (closed unwritten when the answer is dropped; if bgd dies
    /// meanwhile, the command reads the end of its input).
    pub async fn exec_answering(
        &self,
        container: &str,
        cmd: &[&str],
        limit: Duration,
        reply: Option<Reply>,
    ) -> Result<ExecOutput> {
        let what = || {
            format!(
                "run {:?} in container {container}",
                cmd.first().unwrap_or(&"")
            )
        };
        let created = self
            .call(
                what,
                self.api.create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        attach_stdin: Some(reply.is_some()),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        let run = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let mut reply = reply;
            if let StartExecResults::Attached {
                mut output,
                mut input,
            } = self.api.start_exec(&created.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                        LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                        _ => {}
                    }
                    let asked = reply.as_ref().is_some_and(|r| {
                        String::from_utf8_lossy(&stdout)
                            .lines()
                            .any(|l| l == r.prompt)
                    });
                    if let Some(r) = reply.take_if(|_| asked) {
                        let _ = r.prompted.send(());
                        let io = |e: std::io::Error| bollard::errors::Error::IOError {
                            err: std::io::Error::new(
                                e.kind(),
                                format!("writing to its input: {e}"),
                            ),
                        };
                        if let Ok(line) = r.answer.await {
                            input
                                .write_all(format!("{line}\n").as_bytes())
                                .await
                                .map_err(io)?;
                        }
                        input.shutdown().await.map_err(io)?;
                    }
                }
            }
            Ok::<_, bollard::errors::Error>((stdout, stderr))
        };
        let (stdout, stderr) = self
            .call_within(&what, limit, run)
            .await?
            .map_err(|e| error::environment(format!("{}: {}", what(), describe(&e))))?;
        // The exit code comes from inspecting the exec, not from starting it. The output is
        // what matters most (bgd's scripts end with their outcome), so a failed inspect is an
        // unknown code, not a lost output.
        let inspected = self.call(what, self.api.inspect_exec(&created.id)).await;
        Ok(ExecOutput {
            exit_code: inspected.ok().and_then(|i| i.exit_code).unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Writes files into a container (created or running) through the archive API.
    /// `files` are (path relative to `dir`, contents); missing parent directories are created.
    pub async fn upload(&self, container: &str, dir: &str, files: &[(&str, &[u8])]) -> Result<()> {
        let with_modes: Vec<(&str, &[u8], u32)> =
            files.iter().map(|(p, d)| (*p, *d, 0o644)).collect();
        self.upload_modes(container, dir, &with_modes).await
    }

    /// `upload` with each file's mode (0o600 for a private key: owned by root, read by
    /// nginx's master).
    pub async fn upload_modes(
        &self,
        container: &str,
        dir: &str,
        files: &[(&str, &[u8], u32)],
    ) -> Result<()> {
        let tar = archive(files).map_err(|e| anyhow::anyhow!("build archive: {e}"))?;
        self.call(
            || format!("write files into container {container}:{dir}"),
            self.api.upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: dir.to_string(),
                    ..Default::default()
                }),
                tar.into(),
            ),
        )
        .await
    }

    /// Reads every regular file under `path` in a container, (name relative to the archive
    /// root, contents), and names its directories (ending in `/`). A missing path is `None`.
    pub async fn download(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>> {
        let stream = self.api.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let collect = async {
            let mut bytes = Vec::new();
            let mut stream = Box::pin(stream);
            while let Some(chunk) = stream.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            Ok::<_, bollard::errors::Error>(bytes)
        };
        let what = || format!("read {path} in container {container}");
        let Some(bytes) = self.call_opt(what, collect).await? else {
            return Ok(None);
        };
        unpack(&bytes)
            .map(Some)
            .map_err(|e| error::environment(format!("{}: {e}", what())))
    }
}

/// A tar archive of `files`, with their parent directories.
fn archive(files: &[(&str, &[u8], u32)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs_done = std::collections::BTreeSet::new();
    let now = now_secs();
    for (path, data, mode) in files {
        let mut parents: Vec<&std::path::Path> = std::path::Path::new(path)
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        parents.reverse();
        for p in parents {
            if dirs_done.insert(p.to_path_buf()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_mtime(now);
                builder.append_data(&mut header, p, std::io::empty())?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        header.set_mtime(now);
        builder.append_data(&mut header, path, *data)?;
    }
    builder.into_inner()
}

/// The regular files of a tar archive, (path, contents), and its directories, (path ending
/// in `/`, nothing).
fn unpack(bytes: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(bytes);
    let mut files = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        match entry.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory => {
                let dir = if name.ends_with('/') {
                    name
                } else {
                    format!("{name}/")
                };
                files.push((dir, Vec::new()));
                continue;
            }
            _ => continue,
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        files.push((name, data));
    }
    Ok(files)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_with_parents() {
        let tar = archive(&[
            ("bgd/web/state.json", b"{}", 0o644),
            ("bgd/web/tls/k.key", b"x", 0o600),
        ])
        .unwrap();
        let files = unpack(&tar).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bgd/",
                "bgd/web/",
                "bgd/web/state.json",
                "bgd/web/tls/",
                "bgd/web/tls/k.key"
            ]
        );
        assert_eq!(files[2].1, b"{}");
        let mut a = tar::Archive::new(tar.as_slice());
        let modes: Vec<u32> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().mode().unwrap())
            .collect();
        assert_eq!(modes, [0o755, 0o755, 0o644, 0o755, 0o600]);
    }
}
