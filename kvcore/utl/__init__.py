"""kvcoreutl: etcdutl's offline commands for kvcore (snapshot status/restore, ...)."""
