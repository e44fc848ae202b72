//! E-mail delivery (`mailto:address[?subject=…]`).
//!
//! With `smtp_mode = third_part` (the default) the message, an RFC 822 text
//! like the reference's `MIMEText`, is written to the standard input of
//! `smtp_command` (default `/usr/sbin/sendmail -t -oi`, which takes the
//! recipients from the headers). With `smtp_mode = self_local` the server
//! speaks SMTP itself (the `lettre` crate, rustls) to
//! `smtp_host:smtp_port`, one connection per e-mail as the reference:
//!
//! - port 465: TLS from the first byte (SMTPS), as the reference's
//!   `SMTP_SSL`, whatever the port;
//! - any other port: STARTTLS, required when a login is configured (the
//!   password never crosses a plaintext connection), else used when the
//!   server offers it and plaintext otherwise (the reference only speaks
//!   SMTPS, so it cannot use a submission port or a local relay);
//! - login (`smtp_user_name`, `smtp_user_password`) only when
//!   `smtp_user_name` is set (the reference always logs in);
//! - the server's certificate is checked against the public roots plus
//!   `smtp_cafile` (ours), for the server name `smtp_host`.
//!
//! The envelope sender is the `From` address (none when it is empty or not
//! an address), the recipient the `mailto:` address. A permanent SMTP
//! refusal (5xx) is final; anything else is retried per the retry policy
//! (the reference logs errors and drops the e-mail).
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

/// The link of a confirmation e-mail (`Queue` names the topic for a topic's
/// subscription: its documents carry `topic_name` instead of `queue_name`).
fn confirm_link(base: &str, p: &Value) -> String {
    let get = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let source = match get("queue_name") {
        "" => get("topic_name"),
        q => q,
    };
    format!(
        "{base}?Signature={}&Methods={}&Paths={}&Project={}&Expires={}&Url={}&Queue={}",
        get("URL-Signature"),
        get("URL-Methods"),
        get("URL-Paths"),
        get("X-Project-ID"),
        get("URL-Expires"),
        get("WSGISubscribeURL"),
        source,
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

/// An e-mail ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// The recipient (the `mailto:` address).
    pub to: String,
    /// The `From` address (may be empty).
    pub from: String,
    /// The RFC 822 text, lines ending in `\n`.
    pub text: String,
}

/// Builds the e-mail for a delivery, or says why there is none.
pub fn compose(config: &NotificationConfig, delivery: &NewDelivery) -> Result<Email, String> {
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
                config.subscribe_template()
            } else {
                config.unsubscribe_template()
            };
            let project = p.get("X-Project-ID").and_then(Value::as_str).unwrap_or("");
            let name = crate::storage::names::display_name(&delivery.queue);
            from_template(&template, name, project, &confirm_link(base, p))
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
    Ok(Email {
        to,
        from: clean(&from),
        text,
    })
}

/// Sends the e-mail of one delivery.
pub async fn send(config: &NotificationConfig, delivery: &NewDelivery) -> Outcome {
    let email = match compose(config, delivery) {
        Ok(m) => m,
        Err(why) => return Outcome::GiveUp(why),
    };
    match config.smtp_mode {
        SmtpMode::SelfLocal => smtp(config, &email).await,
        SmtpMode::ThirdPart => {
            pipe(
                &config.smtp_command.0,
                &email.text,
                Duration::from_secs(config.webhook_timeout.max(10)),
            )
            .await
        }
    }
}

/// Sends `email` over SMTP to `smtp_host:smtp_port` (`self_local`).
async fn smtp(config: &NotificationConfig, email: &Email) -> Outcome {
    use lettre::address::{Address, Envelope};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let Some(host) = config.smtp_host.as_deref() else {
        return Outcome::GiveUp("smtp_mode = self_local without smtp_host".into());
    };
    let to = match email.to.parse::<Address>() {
        Ok(a) => a,
        Err(e) => return Outcome::GiveUp(format!("invalid recipient {:?}: {e}", email.to)),
    };
    let envelope = match Envelope::new(email.from.parse::<Address>().ok(), vec![to]) {
        Ok(e) => e,
        Err(e) => return Outcome::GiveUp(format!("invalid envelope: {e}")),
    };
    let mut tls = TlsParameters::builder(host.to_owned());
    if let Some(path) = &config.smtp_cafile {
        let cert = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()));
        match cert {
            Ok(c) => tls = tls.add_root_certificate(c),
            Err(e) => return Outcome::Retry(format!("[notification] smtp_cafile {path}: {e}")),
        }
    }
    let tls = match tls.build() {
        Ok(t) => t,
        Err(e) => return Outcome::Retry(format!("SMTP TLS set-up: {e}")),
    };
    let login = config.smtp_user_name.as_ref().map(|user| {
        Credentials::new(
            user.clone(),
            config.smtp_user_password.clone().unwrap_or_default(),
        )
    });
    let tls = match (config.smtp_port, &login) {
        (465, _) => Tls::Wrapper(tls),
        (_, Some(_)) => Tls::Required(tls),
        (_, None) => Tls::Opportunistic(tls),
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(config.smtp_port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(config.webhook_timeout.max(10))));
    if let Some(login) = login {
        transport = transport.credentials(login);
    }
    let text = email.text.replace("\r\n", "\n").replace('\n', "\r\n");
    match transport.build().send_raw(&envelope, text.as_bytes()).await {
        Ok(_) => Outcome::Delivered,
        Err(e) if e.is_permanent() => Outcome::GiveUp(format!("SMTP server refused: {e}")),
        Err(e) => Outcome::Retry(format!("SMTP: {e}")),
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
        let Email { to, from, text } = compose(&c, &d).unwrap();
        assert_eq!(to, "a+b@example.com");
        assert_eq!(from, "zaqar@example.com");
        assert!(text.contains("\nto: a+b@example.com\n"), "{text}");
        assert!(text.contains("\nfrom: zaqar@example.com\n"), "{text}");
        assert!(text.contains("\nsubject: Hello there\n"), "{text}");
        assert!(text.ends_with("\n\n{\"body\":1}"), "{text}");
        let d = delivery("mailto:x@example.com", json!({}));
        assert!(compose(&c, &d).unwrap().text.contains("\nsubject: opt\n"));
        // No header injection through the subject.
        let d = delivery(
            "mailto:x@example.com?subject=a%0D%0ABcc:%20evil@example.com",
            json!({}),
        );
        assert!(!compose(&c, &d).unwrap().text.contains("\nBcc:"));
    }

    /// A topic's confirmation names the topic, in the link and the text
    /// (its documents carry `topic_name`, and it is stored under a prefix).
    #[test]
    fn a_topic_confirmation_names_the_topic() {
        let c = NotificationConfig {
            external_confirmation_url: Some("https://confirm.example.com/".into()),
            ..NotificationConfig::default()
        };
        let payload = json!({"Message_Type": "SubscriptionConfirmation", "URL-Signature": "sig",
                             "X-Project-ID": "p", "topic_name": "news"});
        let mut d = delivery("mailto:x@example.com", payload);
        d.queue = format!("{}news", crate::storage::names::TOPIC_PREFIX);
        let text = compose(&c, &d).unwrap().text;
        assert!(text.contains("&Queue=news"), "{text}");
        assert!(
            text.contains(": news. This queue belongs to project: p."),
            "{text}"
        );
        assert!(
            !text.contains(crate::storage::names::TOPIC_PREFIX),
            "{text}"
        );
    }

    #[test]
    fn confirmation_mail_needs_an_external_url() {
        let mut c = NotificationConfig::default();
        let payload = json!({"Message_Type": "SubscriptionConfirmation", "URL-Signature": "sig", "X-Project-ID": "p",
                             "URL-Paths": "/v2/queues/q/subscriptions/s/confirm", "queue_name": "q"});
        let d = delivery("mailto:x@example.com", payload);
        assert!(compose(&c, &d).is_err());
        c.external_confirmation_url = Some("https://confirm.example.com/".into());
        let text = compose(&c, &d).unwrap().text;
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
