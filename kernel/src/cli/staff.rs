//! `olivine staff`: manage staff users from the server's shell, straight against the
//! database (for the first steps, and when nobody can sign in any more). Everything it
//! does is audited with the actor `cli`.

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;

use crate::config::StoreConfig;
use crate::staff::{NewStaff, Role, StaffPatch};
use crate::store::Db;

const ACTOR: &str = "cli";

#[derive(Subcommand)]
pub enum StaffCommand {
    /// List staff users and their roles.
    List(StoreConfig),
    /// Create a staff user. With --password-stdin the first line of standard input is
    /// their password (otherwise they work with API tokens only).
    Create {
        #[command(flatten)]
        store: StoreConfig,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// owner, admin, catalog or support.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a staff user's password from the first line of standard input (ends their
    /// signed-in sessions).
    SetPassword {
        #[command(flatten)]
        store: StoreConfig,
        #[arg(long)]
        email: String,
    },
    /// Make an API token for a staff user and print it (it is shown only this once).
    Token {
        #[command(flatten)]
        store: StoreConfig,
        #[arg(long)]
        email: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        format!("unknown role `{text}` (one of {})", names.join(", "))
    })
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn open(store: &StoreConfig) -> anyhow::Result<Db> {
    let db = Db::connect(&store.database_url()?, 2).await?;
    crate::store::migrate(&db)
        .await
        .context("migrating the database")?;
    Ok(db)
}

async fn id_by_email(db: &Db, email: &str) -> anyhow::Result<i64> {
    let wanted = crate::accounts::normalise_email(email);
    crate::staff::list_users(db)
        .await
        .map_err(api_error)?
        .into_iter()
        .find(|u| u.email == wanted)
        .map(|u| u.id)
        .with_context(|| format!("no staff user with the email {email}"))
}

fn api_error(err: crate::error::Error) -> anyhow::Error {
    let body = err.body();
    let fields: Vec<String> = body
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    if fields.is_empty() {
        anyhow::anyhow!(body.message)
    } else {
        anyhow::anyhow!("{} ({})", body.message, fields.join("; "))
    }
}

pub async fn run(command: StaffCommand) -> anyhow::Result<()> {
    match command {
        StaffCommand::List(store) => {
            let db = open(&store).await?;
            let users = crate::staff::list_users(&db).await.map_err(api_error)?;
            println!(
                "{:>4}  {:<8}  {:<9}  {:<32}  name",
                "id", "role", "status", "email"
            );
            for user in users {
                let status = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{:>4}  {:<8}  {:<9}  {:<32}  {}",
                    user.id,
                    user.role.name(),
                    status,
                    user.email,
                    user.name
                );
            }
            db.close().await;
        }
        StaffCommand::Create {
            store,
            email,
            name,
            role,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let db = open(&store).await?;
            let user = crate::staff::create_user(
                &db,
                ACTOR,
                NewStaff {
                    email,
                    name,
                    role,
                    password,
                },
            )
            .await
            .map_err(api_error)?;
            println!(
                "created staff user {} ({}) with the role {}",
                user.id,
                user.email,
                user.role.name()
            );
            db.close().await;
        }
        StaffCommand::SetPassword { store, email } => {
            let password = read_password()?;
            let db = open(&store).await?;
            let id = id_by_email(&db, &email).await?;
            crate::staff::update_user(
                &db,
                ACTOR,
                id,
                StaffPatch {
                    password: Some(password),
                    ..Default::default()
                },
            )
            .await
            .map_err(api_error)?;
            println!("password set for {email}");
            db.close().await;
        }
        StaffCommand::Token {
            store,
            email,
            label,
        } => {
            let db = open(&store).await?;
            let id = id_by_email(&db, &email).await?;
            let issued = crate::staff::create_api_token(&db, ACTOR, id, &label)
                .await
                .map_err(api_error)?;
            eprintln!("API token {} for {email} (shown once):", issued.info.id);
            println!("{}", issued.token);
            db.close().await;
        }
    }
    Ok(())
}
