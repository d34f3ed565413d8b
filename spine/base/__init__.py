"""The foundation: errors, ids, processes, git, redaction, liveness. Imports nothing else of spine."""
