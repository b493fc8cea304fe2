//! The lint rules: what an inline statement must not do in its phase.
//!
//! In expand, old pods still run against the schema: a statement that
//! breaks them holds the rollout (`Stalled=True UnsafeExpand`) unless
//! allowed. In transition and contract only new code runs and destructive
//! statements are the point; there the rules flag statements that block
//! writes for long (a Warning event), and hold nothing.
//!
//! The table in docs/design.md lists every rule; keep it in sync (a test
//! compares them).

use crate::api::{Engine, Step};
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, DropBehavior, ObjectType, Statement,
    TableConstraint,
};

/// A lint rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, as written in `allow`.
    pub id: &'static str,
    /// Why it is unsafe, one line.
    pub reason: &'static str,
    /// What to do instead.
    pub fix: &'static str,
    /// Held in expand (old code still runs); otherwise only flagged.
    pub breaks_old_code: bool,
    /// Blocks writes for long: flagged in transition and contract too.
    pub blocks_writes: bool,
}

macro_rules! rule {
    ($name:ident, $id:literal, $old:literal, $blocks:literal, $reason:literal, $fix:literal) => {
        pub const $name: Rule = Rule {
            id: $id,
            reason: $reason,
            fix: $fix,
            breaks_old_code: $old,
            blocks_writes: $blocks,
        };
    };
}

rule!(
    DROP_TABLE,
    "drop-table",
    true,
    false,
    "old pods still read and write the table",
    "drop it in contract"
);
rule!(
    DROP_COLUMN,
    "drop-column",
    true,
    false,
    "old pods still read and write the column",
    "drop it in contract"
);
rule!(
    RENAME_TABLE,
    "rename-table",
    true,
    false,
    "old pods still use the old name",
    "create the new table (or a view) in expand, sync both, drop the old one in contract"
);
rule!(
    RENAME_COLUMN,
    "rename-column",
    true,
    false,
    "old pods still use the old name",
    "add the new column and a sync trigger in expand, drop the old column in contract"
);
rule!(
    CHANGE_COLUMN_TYPE,
    "change-column-type",
    true,
    true,
    "old pods may write values the new type refuses, and most type changes rewrite the table under an exclusive lock",
    "add a column of the new type, backfill and sync it, switch readers, drop the old one in contract"
);
rule!(
    ADD_NOT_NULL_COLUMN,
    "add-not-null-column",
    true,
    false,
    "old pods insert rows without the column, which a NOT NULL column without a default refuses",
    "add it nullable (or with a DEFAULT), backfill, set NOT NULL in contract"
);
rule!(
    SET_NOT_NULL,
    "set-not-null",
    true,
    false,
    "old pods may still insert NULL there (and PostgreSQL scans the table under an exclusive lock)",
    "set NOT NULL in contract, after a backfill (on PostgreSQL: a CHECK ... NOT VALID, VALIDATE, then SET NOT NULL)"
);
rule!(
    DROP_DEFAULT,
    "drop-default",
    true,
    false,
    "old pods may insert rows relying on the default",
    "drop the default in contract"
);
rule!(
    DROP_CONSTRAINT,
    "drop-constraint",
    true,
    false,
    "old code may rely on the constraint (a unique key for ON CONFLICT, a foreign key for consistency)",
    "drop it in contract"
);
rule!(
    NON_CONCURRENT_INDEX,
    "non-concurrent-index",
    true,
    true,
    "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds",
    "CREATE INDEX CONCURRENTLY (bellows runs it outside the phase's transaction)"
);
rule!(
    CONSTRAINT_NOT_VALID,
    "constraint-not-valid",
    true,
    true,
    "adding a FOREIGN KEY or CHECK validates every row under a lock that blocks writes",
    "ADD CONSTRAINT ... NOT VALID, then ALTER TABLE ... VALIDATE CONSTRAINT in a later statement"
);
rule!(
    TRUNCATE,
    "truncate",
    true,
    false,
    "old pods lose the rows they read and write",
    "truncate in contract, if at all"
);

rule!(
    DROP_SCHEMA,
    "drop-schema",
    true,
    false,
    "old pods still use the objects in it",
    "drop it in contract"
);
rule!(
    DROP_VIEW,
    "drop-view",
    true,
    false,
    "old pods may still read the view",
    "drop it in contract"
);
rule!(
    DROP_TYPE,
    "drop-type",
    true,
    false,
    "old pods may still use the type (and CASCADE drops every column of it)",
    "drop it in contract"
);
rule!(
    DROP_CASCADE,
    "drop-cascade",
    true,
    false,
    "CASCADE also drops what depends on the object (views, foreign keys, columns of a type) without naming it",
    "drop the dependent objects by name, in contract"
);
rule!(
    MOVE_TABLE,
    "move-table",
    true,
    false,
    "old pods still use the table in its old schema",
    "create it (or a view) in the new schema in expand, sync both, drop the old one in contract"
);
rule!(
    ADD_UNIQUE,
    "add-unique",
    true,
    true,
    "old pods may insert rows the key refuses, and building its index blocks writes to the table",
    "add it in contract, once only new code writes (PostgreSQL: CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX)"
);

/// Every rule, in the order of the docs' table.
pub const ALL: [&Rule; 18] = [
    &DROP_TABLE,
    &DROP_COLUMN,
    &RENAME_TABLE,
    &RENAME_COLUMN,
    &CHANGE_COLUMN_TYPE,
    &ADD_NOT_NULL_COLUMN,
    &SET_NOT_NULL,
    &DROP_DEFAULT,
    &DROP_CONSTRAINT,
    &NON_CONCURRENT_INDEX,
    &CONSTRAINT_NOT_VALID,
    &TRUNCATE,
    &DROP_SCHEMA,
    &DROP_VIEW,
    &DROP_TYPE,
    &DROP_CASCADE,
    &MOVE_TABLE,
    &ADD_UNIQUE,
];

/// The rule with `id`.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.into_iter().find(|r| r.id == id)
}

/// The rules `statement` breaks in `step` on `engine`.
pub fn broken(engine: Engine, step: Step, statement: &Statement) -> Vec<&'static Rule> {
    matched(engine, statement)
        .into_iter()
        .filter(|r| r.applies_in(step))
        .collect()
}

impl Rule {
    /// Whether a statement matching the rule is reported in `step`.
    pub fn applies_in(&self, step: Step) -> bool {
        match step {
            Step::Expand => self.breaks_old_code,
            Step::Transition | Step::Contract => self.blocks_writes,
        }
    }
}

/// Every rule `statement` matches, regardless of phase.
fn matched(engine: Engine, statement: &Statement) -> Vec<&'static Rule> {
    let pg = engine == Engine::Postgres;
    let mut found = vec![];
    match statement {
        Statement::Drop {
            object_type,
            cascade,
            ..
        } => {
            found.extend(match object_type {
                ObjectType::Table => Some(&DROP_TABLE),
                ObjectType::Schema => Some(&DROP_SCHEMA),
                ObjectType::View | ObjectType::MaterializedView => Some(&DROP_VIEW),
                ObjectType::Type => Some(&DROP_TYPE),
                _ => None,
            });
            if *cascade {
                found.push(&DROP_CASCADE);
            }
        }
        Statement::DropFunction {
            drop_behavior: Some(DropBehavior::Cascade),
            ..
        } => found.push(&DROP_CASCADE),
        Statement::RenameTable(_) => found.push(&RENAME_TABLE),
        Statement::Truncate { .. } => found.push(&TRUNCATE),
        Statement::CreateIndex(index) if pg && !index.concurrently => {
            found.push(&NON_CONCURRENT_INDEX)
        }
        Statement::AlterTable { operations, .. } => {
            for op in operations {
                found.extend(alter_table(pg, op));
            }
        }
        _ => {}
    }
    found
}

fn alter_table(pg: bool, op: &AlterTableOperation) -> Vec<&'static Rule> {
    match op {
        AlterTableOperation::DropColumn { .. } => vec![&DROP_COLUMN],
        AlterTableOperation::RenameTable { .. } => vec![&RENAME_TABLE],
        AlterTableOperation::RenameColumn { .. } => vec![&RENAME_COLUMN],
        AlterTableOperation::ChangeColumn {
            old_name,
            new_name,
            options,
            ..
        } => {
            let mut rules = vec![&CHANGE_COLUMN_TYPE];
            if old_name.value != new_name.value {
                rules.push(&RENAME_COLUMN);
            }
            if options.iter().any(|o| matches!(o, ColumnOption::NotNull)) {
                rules.push(&SET_NOT_NULL);
            }
            rules
        }
        AlterTableOperation::ModifyColumn { options, .. } => {
            let mut rules = vec![&CHANGE_COLUMN_TYPE];
            if options.iter().any(|o| matches!(o, ColumnOption::NotNull)) {
                rules.push(&SET_NOT_NULL);
            }
            rules
        }
        AlterTableOperation::AlterColumn { op, .. } => match op {
            AlterColumnOperation::SetDataType { .. } => vec![&CHANGE_COLUMN_TYPE],
            AlterColumnOperation::SetNotNull => vec![&SET_NOT_NULL],
            AlterColumnOperation::DropDefault => vec![&DROP_DEFAULT],
            _ => vec![],
        },
        AlterTableOperation::AddColumn { column_def, .. } => {
            let options: Vec<&ColumnOption> =
                column_def.options.iter().map(|o| &o.option).collect();
            let not_null = options.iter().any(|o| matches!(o, ColumnOption::NotNull));
            let default = options
                .iter()
                .any(|o| matches!(o, ColumnOption::Default(_) | ColumnOption::Generated { .. }));
            let mut rules = vec![];
            if not_null && !default {
                rules.push(&ADD_NOT_NULL_COLUMN);
            }
            rules
        }
        AlterTableOperation::DropConstraint { .. }
        | AlterTableOperation::DropForeignKey { .. }
        | AlterTableOperation::DropPrimaryKey { .. } => vec![&DROP_CONSTRAINT],
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Unique { .. } | TableConstraint::PrimaryKey { .. },
            ..
        } => vec![&ADD_UNIQUE],
        AlterTableOperation::AddConstraint {
            constraint,
            not_valid,
        } if pg
            && !not_valid
            && matches!(
                constraint,
                TableConstraint::ForeignKey { .. } | TableConstraint::Check { .. }
            ) =>
        {
            vec![&CONSTRAINT_NOT_VALID]
        }
        _ => vec![],
    }
}
