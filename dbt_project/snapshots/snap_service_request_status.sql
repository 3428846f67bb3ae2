{% snapshot snap_service_request_status %}

    with

    service_requests as (

        select * from {{ ref('stg_open311__service_requests') }}

    ),

    final as (

        select
            service_request_id,
            status,
            status_notes,
            requested_at,
            updated_at

        from service_requests

    )

    select * from final

{% endsnapshot %}
