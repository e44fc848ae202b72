//! E-mail delivery (`mailto:address[?subject=…]`).
//!
//! With `smtp_mode = third_part` (the default) the message, an RFC 822 text
//! like the reference's `MIMEText`, is written to the standard input of
//! `smtp_command` (default `/usr/sbin/sendmail -t -oi`, which takes the
//! recipients from the headers). `self_local` (SMTP over TLS from the
//! server itself) is not built in yet: such deliveries are dropped with a
//! warning.
//!
//! Notifications: `To` = the address, `From` = `options.from`, `Subject` =
//! the URI's `subject` query parameter, else `options.subject`; the body
//! is the payload as JSON. Confirmation requests use the
//! `[notification] *_confirmation_email_template`s, with a link to
//! `external_confirmation_url` carrying the signed URL (no e-mail without
//! that option, as in the reference). Header values are stripped of line
//! breaks so a subscriber cannot add headers (or recipients).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::Outcome;
use crate::config::{EmailTemplate, NotificationConfig, SmtpMode};
use crate::storage::outbox::NewDelivery;

/// A `mailto:` URI split into its address and query parameters (names
/// lower-cased, values percent-decoded).
pub fn parse_mailto(uri: &str) -> (String, Vec<(String, String)>) {
    let rest = uri.get(7..).unwrap_or("");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let params = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                percent_decode(k).to_ascii_lowercase(),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect();
    (percent_decode(path), params)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A header value with line breaks removed.
fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// An RFC 822 message with the reference's headers.
pub fn message(to: &str, from: &str, subject: &str, body: &str) -> String {
    let (charset, encoding) = if body.is_ascii() {
        ("us-ascii", "7bit")
    } else {
        ("utf-8", "8bit")
    };
    format!(
        "Content-Type: text/plain; charset=\"{charset}\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: {encoding}\n\
         to: {}\nfrom: {}\nsubject: {}\n\n{body}",
        clean(to),
        clean(from),
        clean(subject)
    )
}

/// The link of a confirmation e-mail.
fn confirm_link(base: &str, p: &Value) -> String {
    let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    format!(
        "{base}?Signature={}&Methods={}&Paths={}&Project={}&Expires={}&Url={}&Queue={}",
        get("URL-Signature"),
        get("URL-Methods"),
        get("URL-Paths"),
        get("X-Project-ID"),
        get("URL-Expires"),
        get("WSGISubscribeURL"),
        get("queue_name"),
    )
}

fn from_template(
    t: &EmailTemplate,
    queue: &str,
    project: &str,
    link: &str,
) -> (String, String, String) {
    let body = t
        .body
        .replace("{0}", queue)
        .replace("{1}", project)
        .replace("{2}", link);
    (t.sender.clone(), t.topic.clone(), body)
}

/// Builds the e-mail for a delivery: `(to, text)`, or why there is none.
pub fn compose(
    config: &NotificationConfig,
    delivery: &NewDelivery,
) -> Result<(String, String), String> {
    let (to, params) = parse_mailto(&delivery.subscriber);
    let p = &delivery.payload;
    let kind = p
        .get("Message_Type")
        .and_then(Value::as_str)
        .unwrap_or("Notification");
    let (from, subject, body) = match kind {
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            let base = config.external_confirmation_url.as_deref().ok_or(
                "no [notification] external_confirmation_url: confirmation e-mails cannot be made",
            )?;
            let template = if kind == "SubscriptionConfirmation" {
                &config.subscription_confirmation_email_template
            } else {
                &config.unsubscribe_confirmation_email_template
            };
            let project = p.get("X-Project-ID").and_then(Value::as_str).unwrap_or("");
            from_template(template, &delivery.queue, project, &confirm_link(base, p))
        }
        _ => {
            let opt = |k: &str| {
                delivery
                    .options
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let subject = params
                .iter()
                .find(|(k, _)| k == "subject")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| opt("subject"));
            (opt("from"), subject, p.to_string())
        }
    };
    let text = message(&to, &from, &subject, &body);
    Ok((to, text))
}

/// Sends the e-mail of one delivery.
pub async fn send(config: &NotificationConfig, delivery: &NewDelivery) -> Outcome {
    let (_, text) = match compose(config, delivery) {
        Ok(m) => m,
        Err(why) => return Outcome::GiveUp(why),
    };
    match config.smtp_mode {
        SmtpMode::SelfLocal => {
            Outcome::GiveUp("smtp_mode = self_local is not supported by this build yet".into())
        }
        SmtpMode::ThirdPart => {
            pipe(
                &config.smtp_command,
                &text,
                Duration::from_secs(config.webhook_timeout_secs.max(10)),
            )
            .await
        }
    }
}

/// Runs `command` with `text` on its standard input.
async fn pipe(command: &[String], text: &str, timeout: Duration) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Outcome::GiveUp("smtp_command is empty".into());
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Retry(format!("cannot run {program}: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(text.as_bytes()).await {
            return Outcome::Retry(format!("cannot write to {program}: {e}"));
        }
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Outcome::Delivered,
        Ok(Ok(out)) => Outcome::Retry(format!(
            "{program} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Outcome::Retry(format!("{program} failed: {e}")),
        Err(_) => Outcome::Retry(format!("{program} did not finish within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn delivery(subscriber: &str, payload: Value) -> NewDelivery {
        NewDelivery {
            project: "p".into(),
            queue: "q".into(),
            subscription_id: "s".into(),
            subscriber: subscriber.into(),
            options: json!({"from": "zaqar@example.com", "subject": "opt"})
                .as_object()
                .cloned()
                .unwrap(),
            queue_retry_policy: None,
            payload,
        }
    }

    #[test]
    fn notification_mail() {
        let c = NotificationConfig::default();
        let d = delivery(
            "mailto:a%2Bb@example.com?Subject=Hello%20there",
            json!({"body": 1}),
        );
        let (to, text) = compose(&c, &d).unwrap();
        assert_eq!(to, "a+b@example.com");
        assert!(text.contains("\nto: a+b@example.com\n"), "{text}");
        assert!(text.contains("\nfrom: zaqar@example.com\n"), "{text}");
        assert!(text.contains("\nsubject: Hello there\n"), "{text}");
        assert!(text.ends_with("\n\n{\"body\":1}"), "{text}");
        let d = delivery("mailto:x@example.com", json!({}));
        assert!(compose(&c, &d).unwrap().1.contains("\nsubject: opt\n"));
        // No header injection through the subject.
        let d = delivery(
            "mailto:x@example.com?subject=a%0D%0ABcc:%20evil@example.com",
            json!({}),
        );
        assert!(!compose(&c, &d).unwrap().1.contains("\nBcc:"));
    }

    #[test]
    fn confirmation_mail_needs_an_external_url() {
        let mut c = NotificationConfig::default();
        let payload = json!({"Message_Type": "SubscriptionConfirmation", "URL-Signature": "sig", "X-Project-ID": "p",
                             "URL-Paths": "/v2/queues/q/subscriptions/s/confirm", "queue_name": "q"});
        let d = delivery("mailto:x@example.com", payload);
        assert!(compose(&c, &d).is_err());
        c.external_confirmation_url = Some("https://confirm.example.com/".into());
        let (_, text) = compose(&c, &d).unwrap();
        assert!(
            text.contains("subject: Zaqar Notification - Subscription Confirmation"),
            "{text}"
        );
        assert!(
            text.contains("https://confirm.example.com/?Signature=sig&"),
            "{text}"
        );
        assert!(
            text.contains("subscribe to the queue: q. This queue belongs to project: p."),
            "{text}"
        );
    }
}
