"""Built-in job types: send-email, webhook-delivery, crawl-website, batch-import,
generate-embedding and generate-content, each registered with one call on `App.use`."""
