SCHEDULE = {
    "access-requests-sweep": {"task": "access_requests.sweep", "schedule": 300.0},
}
