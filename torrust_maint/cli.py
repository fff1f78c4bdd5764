"""Command line: argparse subcommands; main() only wires config, docker and actions."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import traceback

from torrust_maint import __version__, journal, notifications, recovery, reporting
from torrust_maint import config as config_module
from torrust_maint.actions import (
    backup,
    check,
    listing,
    migrate,
    offsite,
    offsite_restore,
    prune,
    report,
    restore,
    sqlite_wal,
    status,
    verify,
)
from torrust_maint.docker import Docker
from torrust_maint.errors import EXIT_FAILED, EXIT_SKIPPED, EXIT_USAGE, ConfigError, MaintError
from torrust_maint.journal import event


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torrust-maint",
        description="Maintenance windows and backups for Torrust Tracker deployments.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help=f"configuration file (default: ${config_module.CONFIG_ENV_VAR} or "
                             f"{config_module.DEFAULT_CONFIG_PATH})")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show a traceback on internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run_backup = commands.add_parser("backup", help="run a maintenance window and back up")
    run_backup.add_argument("--dry-run", action="store_true",
                            help="print every step and docker command; change nothing")
    run_backup.add_argument("--force", action="store_true",
                            help="back up even when the tracker is not running (it stays stopped)")

    run_list = commands.add_parser("list", help="list backup sets")
    run_list.add_argument("--json", action="store_true", help="machine-readable output")
    run_list.add_argument("--offsite", action="store_true",
                          help="list the sets the off-site repository holds (every host)")

    run_prune = commands.add_parser("prune", help="delete sets the retention policy does not keep")
    run_prune.add_argument("--dry-run", action="store_true", help="say what would be deleted")

    commands.add_parser("check", help="validate configuration and deployment")

    run_status = commands.add_parser(
        "status", help="the backups at a glance; exit 1 if the newest set failed verification "
                       "or a window is open (for monitoring)",
        description="Show the backup directory, its free space, the newest set and the newest "
                    "verified set, sets that failed verification, unfinished sets, an open "
                    "window and the lock holder. Exit 0, or 1 when the newest set FAILED "
                    "verification or a maintenance window marker is open (the tracker may be "
                    "stopped), so that a monitoring check can run it as it is.")
    run_status.add_argument("--json", action="store_true", help="machine-readable output")

    run_verify = commands.add_parser(
        "verify", help="check checksums and restore sets somewhere throwaway to prove them")
    run_verify.add_argument("set_id", nargs="?", metavar="ID",
                            help="a set id, or `latest` (the default)")
    run_verify.add_argument("--all", action="store_true", dest="every", help="every set")
    run_verify.add_argument("--scheduled", action="store_true",
                            help="the latest set and one random older set (torrust-verify.timer)")
    run_verify.add_argument("--json", action="store_true", help="machine-readable output")

    run_restore = commands.add_parser(
        "restore", help="restore a set over the live database (the state before is kept)",
        description="Prepare the set while the tracker serves, swap it in inside a short "
                    "window, then keep the state from before in a verified safety set.")
    run_restore.add_argument("set_id", metavar="ID", nargs="?",
                             help="the set to restore (`latest` works)")
    run_restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    run_restore.add_argument("--with-config", action="store_true",
                             help="restore the config files too")
    run_restore.add_argument("--dry-run", action="store_true",
                             help="print every step; change nothing")
    run_restore.add_argument("--no-start", action="store_true",
                             help="leave a tracker that is not running stopped afterwards")
    run_restore.add_argument("--from-offsite", action="store_true",
                             help="fetch the set (ID or `latest`) from the off-site repository "
                                  "first: rebuilding a lost host")
    run_restore.add_argument("--finish", action="store_true",
                             help="only settle an interrupted restore: secure the state from "
                                  "before it in a verified safety set")

    run_recover = commands.add_parser(
        "recover", help="start the tracker again if a window was interrupted (ExecStopPost=)")
    run_recover.add_argument("--guardian", action="store_true", help=argparse.SUPPRESS)

    run_report = commands.add_parser(
        "report", help="record and notify how a backup or verify unit ended "
                       "(torrust-notify@.service, from OnFailure= and OnSuccess=)")
    run_report.add_argument("unit", help="the unit that ended, e.g. torrust-backup.service")

    run_offsite = commands.add_parser(
        "offsite", help="off-site copies through restic ([offsite] in the configuration)")
    offsite_commands = run_offsite.add_subparsers(dest="offsite_command", metavar="ACTION",
                                                  required=True)
    offsite_commands.add_parser("init", help="create the restic repository (compressed)")
    offsite_commands.add_parser(
        "upload", help="upload every verified set not yet off-site, then forget and prune "
                       "by the off-site retention (torrust-offsite.service)")
    offsite_commands.add_parser(
        "check", help="restic check of a share of the data, and fetch the newest set for the "
                      "next `verify --scheduled` (torrust-offsite-check.service)")
    offsite_commands.add_parser("configured", help=argparse.SUPPRESS)

    run_migrate = commands.add_parser(
        "migrate", help="switch from the legacy cron backup to torrust-backup.timer",
        description="Convert the legacy cron backup's schedule (a timer drop-in) and settings "
                    "(backup.conf, backup-paths.txt: shown as a diff of the configuration), "
                    "run check, then comment out the cron job and enable the timer.")
    run_migrate.add_argument("--dry-run", action="store_true",
                             help="show everything it would do; change nothing")
    run_migrate.add_argument("--write-config", action="store_true",
                             help="write the configuration changes the diff shows")
    run_migrate.add_argument("--undo", action="store_true",
                             help="put back everything a migrate changed, from its record")

    run_sqlite_wal = commands.add_parser(
        "sqlite-wal", help="switch the SQLite database to WAL mode (shorter backup windows)",
        description="Take a verified safety backup and, inside its maintenance window, switch "
                    "the deployment's SQLite database to WAL mode (PRAGMA journal_mode=WAL, "
                    "then PRAGMA quick_check). Run it from a shell; see torrust-maint(8).")
    run_sqlite_wal.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    run_sqlite_wal.add_argument("--dry-run", action="store_true",
                                help="print every step; change nothing")

    commands.add_parser(
        "notify-test", help="send a test notice to every [notify] URL; exit 1 if any failed")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "report":  # logs its record first; copes with a broken configuration
        return report.run(args.unit, dict(os.environ))
    path = config_module.config_path_from(args.config, dict(os.environ))
    if args.command == "migrate":  # before load: it writes the configuration
        return migrate.run(path, Docker(), dry_run=args.dry_run,
                           write_config=args.write_config, undo=args.undo)
    if args.command == "offsite" and args.offsite_command == "configured":
        return offsite.configured(path)
    config = config_module.load(path)
    if config.logging.file is not None:
        journal.add_file_log(config.logging.file)
    if args.command == "list":
        if args.offsite:
            return listing.run_offsite(config, as_json=args.json)
        return listing.run(config, as_json=args.json)
    if args.command == "offsite":
        return offsite_command(config, args.offsite_command)
    if args.command == "prune":
        return prune.run(config, dry_run=args.dry_run)
    if args.command == "status":
        return status.run(config, as_json=args.json)
    if args.command == "notify-test":
        return notify_test(config)
    docker = Docker(dry_run=getattr(args, "dry_run", False))
    if args.command == "check":
        return check.run(config, docker)
    if args.command == "sqlite-wal":
        return sqlite_wal.run(config, docker, assume_yes=args.yes, dry_run=args.dry_run)
    if args.command == "recover":
        return recover_command(config, docker, guardian=args.guardian)
    if args.command == "verify":
        if args.every and (args.set_id or args.scheduled):
            raise ConfigError("verify: --all takes no ID and no --scheduled")
        return reporting.reported(config, "verify", lambda details: verify.run(
            config, docker, target=args.set_id, every=args.every, scheduled=args.scheduled,
            as_json=args.json))
    if args.command == "restore":
        if args.from_offsite:
            return offsite_restore.run(config, docker, args.set_id, assume_yes=args.yes,
                                       with_config=args.with_config, no_start=args.no_start,
                                       dry_run=args.dry_run)
        return restore.run(config, docker, args.set_id, assume_yes=args.yes,
                           with_config=args.with_config, dry_run=args.dry_run,
                           no_start=args.no_start, finish=args.finish)
    if args.dry_run:
        return backup.run(config, docker, dry_run=True, force=args.force)
    return reporting.reported(config, "backup", lambda details: backup.run(
        config, docker, force=args.force, details=details))


def offsite_command(config, action: str) -> int:
    if action == "init":
        return offsite.init(config)
    if action == "upload":
        return reporting.reported(config, "upload",
                                  lambda details: offsite.upload(config, details))
    return reporting.reported(config, "offsite-check", lambda details: offsite.check(config))


def recover_command(config, docker: Docker, guardian: bool) -> int:
    directory, timeout = config.backup.directory, config.deployment.start_timeout
    if guardian:
        return recovery.guard(directory, docker, timeout)
    recovery.recover(directory, docker, timeout)  # says what it did, or who holds the lock
    return 0


def notify_test(config) -> int:
    """Send a test notice to every configured URL (whatever [notify] on says)."""
    if not config.notify.configured:
        raise ConfigError("[notify]: no urls and no urls_file are set; nothing to test")
    settings = dataclasses.replace(config.notify, on=("test",))
    notice = notifications.Notice("test", "torrust-maint: test notice",
                                  f"A test notice from torrust-maint on {os.uname().nodename} "
                                  f"for {config.deployment.compose_dir}.")
    if notifications.send(settings, notice):
        print("test notice delivered to every URL")
        return 0
    print("torrust-maint: error: a test notice was not delivered (see the log above)",
          file=sys.stderr)
    return EXIT_FAILED


def escape_unencodable_output() -> None:
    """Names on disk may hold bytes that are not UTF-8: print them escaped, never crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become `torrust-maint: error:` lines and an exit code."""
    args = build_parser().parse_args(argv)
    escape_unencodable_output()
    journal.setup(-1 if args.quiet else args.verbose)
    try:
        try:
            return dispatch(args)
        except OSError as error:  # the environment (a full or removed disk), not a bug
            where = f" ({error.filename})" if error.filename else ""
            raise MaintError(f"{error.strerror or error}{where}") from None
    except MaintError as error:
        for line in str(error).splitlines() or [type(error).__name__]:
            print(f"torrust-maint: error: {line}", file=sys.stderr)
        if args.command == "backup" and error.exit_code not in (EXIT_SKIPPED, EXIT_USAGE):
            event("backup_failed", "backup failed (exit %d): %s", error.exit_code, error,
                  level=logging.ERROR, EXIT_CODE=error.exit_code, ERROR=str(error))
        return error.exit_code
    except KeyboardInterrupt:
        print("torrust-maint: error: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 -- the last line of defence: no raw traceback
        if args.debug:
            traceback.print_exc()
        print(f"torrust-maint: internal error: {type(error).__name__}: {error} "
              "(run with --debug for a traceback)", file=sys.stderr)
        if args.command == "backup":
            event("backup_failed", "backup failed: internal error %s: %s",
                  type(error).__name__, error, level=logging.ERROR, EXIT_CODE=EXIT_FAILED,
                  ERROR=f"{type(error).__name__}: {error}")
        return EXIT_FAILED


