module plexspaces.example/ratelimiter

go 1.24
