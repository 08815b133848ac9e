"""The chat over the event log: question -> what it points at -> diagnosis, similar, proposals -> answer."""
