from django.urls import path
from shop import views

urlpatterns = [
    path("signups/", views.signups),
    path("signup/", views.signup),
]
